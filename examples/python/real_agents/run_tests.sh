#!/usr/bin/env bash
# Runs the Python twin's tests: installs its clients (requirements.txt) into the Python package's
# virtual environment and runs pytest. Needs the federation's release build
# (`cargo build --release -p metafed-federation`) and the package installed by
# bindings/python/run_tests.sh (scripts/test-all.sh runs both first).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
test -x "$root/target/release/metafed-federation" ||
  { echo "missing target/release/metafed-federation: run cargo build --release -p metafed-federation" >&2; exit 1; }
if [ -x "$root/target/pyenv/bin/python" ]; then
  py="$root/target/pyenv/bin/python"
  "$py" -m pip install -q -r "$here/requirements.txt"
else
  # bindings/python/run_tests.sh installed into a folder instead (no venv module).
  test -d "$root/target/pyenv-site" || { echo "run bindings/python/run_tests.sh first" >&2; exit 1; }
  py=python3
  python3 -m pip install -q --upgrade --target "$root/target/pyenv-site" -r "$here/requirements.txt"
  export PYTHONPATH="$root/target/pyenv-site${PYTHONPATH:+:$PYTHONPATH}"
fi
cd "$here"
# The twin is typed: mypy --strict checks it as it checks the package.
"$py" -m mypy --strict --no-error-summary --cache-dir "$root/target/mypy-twin" twin.py test_twin.py
"$py" -m pytest -q -p no:cacheprovider test_twin.py "$@"
