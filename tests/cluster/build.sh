#!/usr/bin/env bash
# Builds the cluster of the tests from Go modules, once per version. Versions are pinned in
# go/kube/go.mod, go/etcd/go.mod, go/volcano/go.mod and go/coredns/go.mod (the only place);
# binaries are cached outside the checkout, in $NASOP_CLUSTER_CACHE (default
# ~/.cache/nasop/cluster), under a folder named by those versions. Prints the folder holding the binaries.
#   build.sh        etcd, kube-apiserver, kube-controller-manager (the control plane)
#   build.sh node   kubelet, kube-scheduler, Volcano's vc-scheduler and vc-controller-manager
#   build.sh dns    CoreDNS with the plugins go/coredns/main.go imports (the cluster's DNS)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pinned() { (cd "$here/go/$1" && GOFLAGS=-mod=mod GOWORK=off go list -m -f '{{.Version}}' "$2"); }
kube_version=$(pinned kube k8s.io/kubernetes)
cache="${NASOP_CLUSTER_CACHE:-$HOME/.cache/nasop/cluster}"
case "${1:-controlplane}" in
  controlplane)
    etcd_version=$(pinned etcd go.etcd.io/etcd/server/v3)
    out="$cache/kube-$kube_version-etcd-$etcd_version"
    binaries=(etcd kube-apiserver kube-controller-manager) ;;
  node)
    volcano_version=$(pinned volcano volcano.sh/volcano)
    out="$cache/node-kube-$kube_version-volcano-$volcano_version"
    binaries=(kubelet kube-scheduler vc-scheduler vc-controller-manager) ;;
  dns)
    out="$cache/coredns-$(pinned coredns github.com/coredns/coredns)"
    binaries=(coredns) ;;
  *) echo "usage: build.sh [node|dns]" >&2; exit 2 ;;
esac
built() { for binary in "${binaries[@]}"; do [[ -x "$out/$binary" ]] || return 1; done; }
if built; then echo "$out"; exit 0; fi
# one build of a folder at a time (two test runs at once would write the same $out.tmp, and the
# first to finish would move the other's half-written folder into place)
mkdir -p "$cache"
exec 9>"$out.lock"
flock 9
if built; then echo "$out"; exit 0; fi  # built by the run we waited for

mkdir -p "$out.tmp"
export CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=readonly
minor=$(echo "$kube_version" | cut -d. -f2)
stamp="-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1"
stamp="$stamp -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
gobuild() { go build -trimpath -buildvcs=false "$@"; }
start=$(date +%s)
if [[ "${1:-controlplane}" = controlplane ]]; then
  (cd "$here/go/etcd" && gobuild -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3) >&2
  (cd "$here/go/kube" && gobuild -ldflags "-s -w $stamp" -o "$out.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager) >&2
elif [[ "$1" = dns ]]; then
  (cd "$here/go/coredns" && gobuild -ldflags "-s -w" -o "$out.tmp/coredns" .) >&2
else
  (cd "$here/go/kube" && gobuild -ldflags "-s -w $stamp" -o "$out.tmp/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler) >&2
  (cd "$here/go/volcano" && gobuild -ldflags "-s -w" -o "$out.tmp/vc-scheduler" volcano.sh/volcano/cmd/scheduler \
    && gobuild -ldflags "-s -w" -o "$out.tmp/vc-controller-manager" volcano.sh/volcano/cmd/controller-manager) >&2
fi
echo "built in $(( $(date +%s) - start )) s: $(du -sh "$out.tmp" | cut -f1)" >&2
rm -rf "$out"; mv "$out.tmp" "$out"
echo "$out"
