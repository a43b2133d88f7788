#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager from Go modules, once per version.
# The versions are pinned in go/kube/go.mod and go/etcd/go.mod (the only place); the binaries are
# cached outside the checkout, in $NASOP_CLUSTER_CACHE (default ~/.cache/nasop/cluster), under a
# folder named by those versions. Prints the folder holding the binaries.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pinned() { (cd "$here/go/$1" && GOFLAGS=-mod=mod GOWORK=off go list -m -f '{{.Version}}' "$2"); }
kube_version=$(pinned kube k8s.io/kubernetes)
etcd_version=$(pinned etcd go.etcd.io/etcd/server/v3)
cache="${NASOP_CLUSTER_CACHE:-$HOME/.cache/nasop/cluster}"
out="$cache/kube-$kube_version-etcd-$etcd_version"
if [[ -x "$out/kube-apiserver" && -x "$out/kube-controller-manager" && -x "$out/etcd" ]]; then
  echo "$out"; exit 0
fi
mkdir -p "$out.tmp"
export CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=readonly
minor=$(echo "$kube_version" | cut -d. -f2)
stamp="-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1"
stamp="$stamp -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
start=$(date +%s)
(cd "$here/go/etcd" && go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3) >&2
(cd "$here/go/kube" && go build -trimpath -buildvcs=false -ldflags "-s -w $stamp" -o "$out.tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager) >&2
echo "built in $(( $(date +%s) - start )) s: $(du -sh "$out.tmp" | cut -f1)" >&2
rm -rf "$out"; mv "$out.tmp" "$out"
echo "$out"
