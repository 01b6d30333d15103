#!/bin/sh
# local-build.sh SRC OUT: builds the multi-call binary of upstream/cmd/k8s
# (what `make kube` builds as bin/k8s from the pinned release) from a local
# kubernetes source tree SRC into OUT. `KUBERNETES_SRC=SRC make kube` runs
# it (see README.md, "Running a kube-proxy patch").
#
# The checked-in upstream/go.mod is never edited: a copy of it and of go.sum
# (OUT.mod, OUT.sum) gets replace directives onto SRC (k8s.io/kubernetes)
# and onto every module of SRC/staging/src/k8s.io, and `go build -modfile`
# builds with that copy. -mod=mod lets the copy take the newer dependency
# versions a newer tree requires. etcd and CoreDNS stay the pinned ones.
#
# The components' version is $KUBERNETES_SRC_VERSION, else what `git
# describe` says of SRC (in the form Kubernetes' own build gives it,
# v1.38.0-alpha.1.42+0123abcd[-dirty]), else v0.0.0-master, upstream's own
# for a build without version stamps.
set -eu
src=$1 out=$2
case $src in /*) ;; *) src=$(cd "$src" && pwd) ;; esac
if ! grep -q '^module k8s.io/kubernetes$' "$src/go.mod" 2>/dev/null; then
	echo "KUBERNETES_SRC=$src: not a kubernetes source tree (no go.mod of module k8s.io/kubernetes)" >&2
	exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
mod=$out.mod
cp "$here/go.mod" "$mod"
cp "$here/go.sum" "${out}.sum"
set -- "-replace=k8s.io/kubernetes=$src"
n=0
for d in "$src"/staging/src/k8s.io/*/; do
	d=${d%/}
	[ -f "$d/go.mod" ] || continue
	set -- "$@" "-replace=k8s.io/$(basename "$d")=$d"
	n=$((n + 1))
done
cd "$here"
go mod edit -modfile="$mod" "$@"

version=${KUBERNETES_SRC_VERSION:-}
if [ -z "$version" ] && git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	version=$(git -C "$src" describe --tags --match 'v[0-9]*' --abbrev=14 --dirty 2>/dev/null |
		sed -E 's/-([0-9]+)-g([0-9a-f]+)/.\1+\2/') || version=""
fi
version=${version:-v0.0.0-master}
state=clean
case $version in *-dirty) state=dirty ;; esac
major=$(echo "$version" | sed -E 's/^v([0-9]+)\..*/\1/')
minor=$(echo "$version" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ld=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ld="$ld -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	ld="$ld -X $pkg.gitTreeState=$state -X $pkg.buildDate=$date"
done
echo "building $out from $src ($n staging modules; version $version; modfile $mod)"
go build -mod=mod -modfile="$mod" -trimpath -ldflags "-s -w$ld" -o "$out.tmp" ./cmd/k8s
mv "$out.tmp" "$out"
