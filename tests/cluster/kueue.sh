#!/usr/bin/env bash
# Builds Kueue's controller manager from its Go module, once per version, beside build.sh's
# binaries: the version is pinned in go/kueue/go.mod (the only place); the binary is cached in
# $NASOP_CLUSTER_CACHE (default ~/.cache/nasop/cluster) under kueue-<version>/. Prints that folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version=$(cd "$here/go/kueue" && GOFLAGS=-mod=mod GOWORK=off go list -m -f '{{.Version}}' sigs.k8s.io/kueue)
cache="${NASOP_CLUSTER_CACHE:-$HOME/.cache/nasop/cluster}"
out="$cache/kueue-$version"
if [[ -x "$out/kueue" ]]; then
  echo "$out"; exit 0
fi
mkdir -p "$out.tmp"
export CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=readonly
start=$(date +%s)
(cd "$here/go/kueue" && go build -trimpath -buildvcs=false \
  -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$version" \
  -o "$out.tmp/kueue" sigs.k8s.io/kueue/cmd/kueue) >&2
echo "built in $(( $(date +%s) - start )) s: $(du -sh "$out.tmp" | cut -f1)" >&2
rm -rf "$out"; mv "$out.tmp" "$out"
echo "$out"
