#!/usr/bin/env bash
# The seed's federation from Python in one command, from a fresh clone: builds what it needs
# into target/ (the C library, the federation's services, a virtual environment with the
# package and the twin's clients), then runs twin.py with the arguments given (--help for them).
#
#   examples/python/real_agents/run.sh [--seconds 20] [--rate 400] [--faults ...] [--json]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"
say() { printf 'run.sh: %s\n' "$*" >&2; }
if [ ! -f target/release/libmetafed.so ]; then
  say "building the library (cargo build --release) ..."
  cargo build --release --locked
fi
if [ ! -x target/release/metafed-federation ]; then
  say "building the federation's services (cargo build --release -p metafed-federation; a few minutes the first time) ..."
  cargo build --release --locked -p metafed-federation
fi
# The package is installed again whenever the library or the package's sources change.
stamp="$(cat target/release/libmetafed.so bindings/python/metafed/*.py bindings/python/metafed/_cdef.h | cksum)"
install() { # $1: the python, then pip's options
  local python="$1"; shift
  say "installing the package and the twin's clients ..."
  # The package carries the library as built above (building it again would use other features).
  METAFED_SKIP_CARGO=1 "$python" -m pip install -q "$@" -r "$here/requirements.txt"
  METAFED_SKIP_CARGO=1 "$python" -m pip install -q --force-reinstall --no-deps "$@" ./bindings/python
}
venv=target/twin-venv
py="$venv/bin/python"
if [ ! -x "$py" ] && ! python3 -m venv "$venv" 2>/dev/null; then
  # No venv module (some distributions split it out): a folder of our own on PYTHONPATH instead.
  rm -rf "$venv"
  py=python3
  site=target/twin-site
  export PYTHONPATH="$root/$site${PYTHONPATH:+:$PYTHONPATH}"
  if [ "$(cat "$site/.stamp" 2>/dev/null)" != "$stamp" ]; then
    install "$py" --upgrade --target "$site"
    echo "$stamp" > "$site/.stamp"
  fi
  exec "$py" "$here/twin.py" "$@"
fi
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
  install "$py"
  echo "$stamp" > "$venv/.stamp"
fi
exec "$py" "$here/twin.py" "$@"
