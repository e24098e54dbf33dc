#!/usr/bin/env bash
# Builds kube-apiserver, etcd, kube-controller-manager, kubectl (from tests/control-plane) and
# helm from the Go module proxy, once, into a cache outside the repo keyed by the versions and a
# hash of the wrapper module. Prints the bin directory on stdout. A warm cache costs nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src="$here/tests/control-plane"
helm_version=v3.22.0
kube_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$src/go.mod")
hash=$(cat "$src/go.mod" "$src/go.sum" "$src"/cmd/*/main.go "$0" | sha256sum | cut -c1-12)
cache_root=${VPSNAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vpsnap}
dest="$cache_root/control-plane/kube-$kube_version-helm-$helm_version-$hash"

if [ -x "$dest/bin/kube-apiserver" ]; then
  echo "$dest/bin"
  exit 0
fi

mkdir -p "$cache_root/control-plane"
exec 9>"$cache_root/control-plane/.lock"
flock 9
if [ -x "$dest/bin/kube-apiserver" ]; then
  echo "$dest/bin"
  exit 0
fi

tmp=$(mktemp -d "$cache_root/control-plane/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "building control plane $kube_version and helm $helm_version into $dest (first run only, ~15-25 min on 2 cores)" >&2
start=$(date +%s)
# Stamp the Kubernetes version the way the upstream release build does; without it the
# apiserver reports v0.0.0-master and version-gated tools (helm's kubeVersion) refuse it.
minor=$(echo "$kube_version" | cut -d. -f2)
version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
(
  cd "$src"
  export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
  for cmd in etcd kube-apiserver kube-controller-manager kubectl; do
    echo "  go build $cmd" >&2
    go build -trimpath -ldflags="-s -w$version_flags" -o "$tmp/bin/$cmd" "./cmd/$cmd"
  done
)
echo "  go install helm $helm_version" >&2
GOBIN="$tmp/bin" GOTOOLCHAIN=local CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' "helm.sh/helm/v3/cmd/helm@$helm_version"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "control plane built in $(( $(date +%s) - start ))s" >&2
echo "$dest/bin"
