#!/usr/bin/env bash
# Installs the Python package into a virtual environment under target/ and runs its tests
# against the release build of the library. Run `cargo build --release` first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/pyenv"
test -f "$root/target/release/libmetafed.so" || { echo "missing target/release/libmetafed.so: run cargo build --release" >&2; exit 1; }
# The package (and the wheel a test builds) carries that library as built: building it again
# with `cargo build -p libmetafed` would compile the library with another set of features, and
# the workspace's next build would compile it back.
export METAFED_SKIP_CARGO=1
if [ -x "$venv/bin/python" ] || python3 -m venv "$venv" 2>/dev/null; then
  py="$venv/bin/python"
  "$py" -m pip install -q "$here[test]"
else
  # No venv module (some distributions split it out): install into a folder of our own instead.
  echo "python3 -m venv is unavailable; installing into $venv-site" >&2
  py=python3
  python3 -m pip install -q --upgrade --target "$venv-site" "$here[test]"
  export PYTHONPATH="$venv-site${PYTHONPATH:+:$PYTHONPATH}"
fi
cd "$here/tests"
# Run from the tests folder so that the installed package, not the source tree, is imported.
"$py" -m pytest -q -p no:cacheprovider "$@"
