#!/usr/bin/env bash
# Installs metafed into a temporary prefix with scripts/install.sh, as a C or C++ user would, and
# builds against the installed files only: examples/c/client.c with pkg-config (shared and
# static) and examples/cpp with CMake's find_package(metafed) (shared and static); runs all four.
# Then checks the ABI against the record in abi/ (scripts/abi.sh). Needs pkg-config, cmake and
# abigail-tools; run `cargo build --release` first.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
for tool in pkg-config cmake abidiff; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install pkg-config cmake abigail-tools)" >&2; exit 1; }
done
tmp="$(mktemp -d "${TMPDIR:-/tmp}/metafed-packaging.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
# From a copy of the examples outside the repository: nothing may come from the source tree.
cp -r examples/c examples/cpp "$tmp/"

# --help prints the usage, from the script's opening comment, and nothing of its code.
help="$(scripts/install.sh --help)"
grep -q '^Usage: scripts/install.sh' <<<"$help" && ! grep -q 'set -euo' <<<"$help" \
  || { echo "install.sh --help printed:" >&2; echo "$help" >&2; exit 1; }
scripts/install.sh --no-build --prefix "$prefix"
version="$(pkg-config --modversion --with-path="$prefix/lib/pkgconfig" metafed)"
major="${version%%.*}"
for f in include/metafed.h "lib/libmetafed.so.$version" lib/libmetafed.a lib/pkgconfig/metafed.pc \
         lib/cmake/metafed/metafedConfig.cmake lib/cmake/metafed/metafedConfigVersion.cmake; do
  test -f "$prefix/$f" || { echo "install left out $f" >&2; exit 1; }
done
test "$(readlink "$prefix/lib/libmetafed.so.$major")" = "libmetafed.so.$version"
test "$(readlink "$prefix/lib/libmetafed.so")" = "libmetafed.so.$major"

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
warn=(-Wall -Wextra -Werror -pedantic)
libdir="$(pkg-config --variable=libdir metafed)"

echo "-- C, shared, with pkg-config"
# shellcheck disable=SC2046 # pkg-config's output is a list of flags
cc -std=c99 -O2 "${warn[@]}" "$tmp/c/client.c" $(pkg-config --cflags --libs metafed) -Wl,-rpath,"$libdir" -o "$tmp/client_shared"
readelf -d "$tmp/client_shared" | grep -q "NEEDED.*libmetafed.so.$major\]" || { echo "client_shared does not need libmetafed.so.$major" >&2; exit 1; }
"$tmp/client_shared"

echo "-- C, static, with pkg-config (the archive, then Libs.private)"
# shellcheck disable=SC2046
cc -std=c99 -O2 "${warn[@]}" "$tmp/c/client.c" $(pkg-config --cflags metafed) "$libdir/libmetafed.a" \
  $(pkg-config --static --libs-only-l metafed | sed 's/-lmetafed //') -o "$tmp/client_static"
if readelf -d "$tmp/client_static" | grep -q 'NEEDED.*libmetafed'; then echo "client_static needs libmetafed.so" >&2; exit 1; fi
"$tmp/client_static"
echo "   (static client: $(( $(stat -c %s "$tmp/client_static") / 1024 )) KiB)"

echo "-- C++17 with CMake, find_package(metafed)"
cmake -S "$tmp/cpp" -B "$tmp/cpp-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" >/dev/null
cmake --build "$tmp/cpp-build" >/dev/null
"$tmp/cpp-build/client"
if readelf -d "$tmp/cpp-build/client_static" | grep -q 'NEEDED.*libmetafed'; then echo "client_static (C++) needs libmetafed.so" >&2; exit 1; fi
"$tmp/cpp-build/client_static"

echo "-- find_package(metafed) refuses another major version, and a newer minor"
for asked in 0.1 2.0 "$major.999"; do
  mkdir -p "$tmp/ask"
  printf 'cmake_minimum_required(VERSION 3.16)\nproject(ask NONE)\nfind_package(metafed %s REQUIRED)\n' "$asked" >"$tmp/ask/CMakeLists.txt"
  if cmake -S "$tmp/ask" -B "$tmp/ask/build-$asked" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null 2>&1; then
    echo "find_package(metafed $asked) accepted metafed $version" >&2; exit 1
  fi
done

echo "-- a staged install (--destdir) says the final prefix, not the stage"
scripts/install.sh --no-build --prefix /opt/metafed --destdir "$tmp/stage" >/dev/null
grep -q '^prefix=/opt/metafed$' "$tmp/stage/opt/metafed/lib/pkgconfig/metafed.pc"

echo "-- the ABI against its record"
scripts/abi.sh check
echo "packaging tests passed"
