#!/bin/sh
# build-capsules.sh OUTDIR: builds every capsule under capsules/ (a
# directory holding Capsule.toml and a Go main package) for GOOS=wasip1
# GOARCH=wasm and lays it out as OUTDIR/<name>/{Capsule.toml,<wasm>}, where
# <name> is the directory name and <wasm> the manifest's package.wasm.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
out=$1
root=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$out"
out=$(cd "$out" && pwd) # the go build below runs in each capsule's directory
for dir in "$root"/capsules/*/; do
	[ -f "$dir/Capsule.toml" ] || continue
	name=$(basename "$dir")
	# The wasm file name is the only manifest value the build needs.
	wasm=$(sed -n 's/^[[:space:]]*wasm[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' \
		"$dir/Capsule.toml" | head -n 1)
	if [ -z "$wasm" ]; then
		echo "$dir/Capsule.toml: no package.wasm" >&2
		exit 1
	fi
	mkdir -p "$out/$name"
	(cd "$dir" && GOOS=wasip1 GOARCH=wasm GOFLAGS= go build -trimpath -o "$out/$name/$wasm" .)
	cp "$dir/Capsule.toml" "$out/$name/Capsule.toml"
	echo "built $out/$name/$wasm"
done
