#!/usr/bin/env bash
# Build the sample Python phase (app.py) into a WebAssembly component with componentize-py,
# against the repository's wit/phase.wit. componentize-py comes from PyPI into a virtualenv
# cached outside the repository (first run: a download, then instant).
#
#   host/vsm-plugin/samples/python-phase/build.sh [OUTPUT.wasm]
#
# Default output: target/python-sample/python-node-check.wasm. Needs python3 (3.10+).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
version=0.25.1
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vsphere-migration/componentize-py-$version"
out="${1:-$root/target/python-sample/python-node-check.wasm}"

mkdir -p "$(dirname "$cache")" "$(dirname "$out")"
(
  # One installer at a time; a half-made virtualenv is removed and made again.
  flock 9
  if [ ! -f "$cache/.installed" ]; then
    rm -rf "$cache"
    python3 -m venv "$cache"
    "$cache/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$version"
    touch "$cache/.installed"
  fi
) 9>"$cache.lock"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/app.py" "$work/"
cd "$work"
"$cache/bin/componentize-py" -d "$root/wit" -w phase componentize app -o "$out.tmp" >/dev/null
mv "$out.tmp" "$out"
echo "$out"
