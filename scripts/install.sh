#!/usr/bin/env bash
# Installs metafed for C and C++ users into a prefix, as a distribution's package would:
#
#   PREFIX/include/metafed.h
#   PREFIX/lib/libmetafed.so.X.Y.Z, with the links libmetafed.so.X (the soname) and libmetafed.so
#   PREFIX/lib/libmetafed.a
#   PREFIX/lib/pkgconfig/metafed.pc               pkg-config metafed (static flags in Libs.private)
#   PREFIX/lib/cmake/metafed/metafedConfig.cmake  find_package(metafed): metafed::metafed and
#   PREFIX/lib/cmake/metafed/metafedConfigVersion.cmake               metafed::metafed_static
#
# Usage: scripts/install.sh [--prefix DIR] [--libdir DIR] [--destdir DIR] [--no-build]
#   --prefix   where to install (default /usr/local)
#   --libdir   the library folder (default PREFIX/lib; e.g. PREFIX/lib/x86_64-linux-gnu)
#   --destdir  stage the files under DIR (for packagers: the installed files still say PREFIX)
#   --no-build install what `cargo build --release` already built, without running cargo
#
# Why a script and not cargo-c's `cargo cinstall`: cargo-c is not part of the Rust toolchain,
# and installing it compiles cargo itself as a library; this script needs only the toolchain and
# coreutils, and installs the same layout.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local libdir="" destdir="" build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --libdir) libdir="${2:?--libdir needs a folder}"; shift 2 ;;
    --libdir=*) libdir="${1#*=}"; shift ;;
    --destdir) destdir="${2:?--destdir needs a folder}"; shift 2 ;;
    --destdir=*) destdir="${1#*=}"; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be an absolute path, got '$prefix'" >&2; exit 2 ;; esac
libdir="${libdir:-$prefix/lib}"
case "$libdir" in /*) ;; *) echo "install.sh: --libdir must be an absolute path, got '$libdir'" >&2; exit 2 ;; esac

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' bindings/c/Cargo.toml | head -1)"
major="${version%%.*}"
[ -n "$version" ] || { echo "install.sh: no version in bindings/c/Cargo.toml" >&2; exit 1; }

if [ "$build" = 1 ]; then
  cargo build --release --locked
fi
built=target/release
for f in libmetafed.so libmetafed.a; do
  test -f "$built/$f" || { echo "install.sh: missing $built/$f: run cargo build --release" >&2; exit 1; }
done
readelf -d "$built/libmetafed.so" | grep -q "SONAME.*libmetafed.so.$major\]" \
  || { echo "install.sh: $built/libmetafed.so does not have the soname libmetafed.so.$major" >&2; exit 1; }

inc="$destdir$prefix/include" lib="$destdir$libdir"
mkdir -p "$inc" "$lib/pkgconfig" "$lib/cmake/metafed"
install -m 644 include/metafed.h "$inc/metafed.h"
# The line tables the release profile keeps are for profiling here; installed files drop them.
install -m 755 "$built/libmetafed.so" "$lib/libmetafed.so.$version"
strip --strip-debug "$lib/libmetafed.so.$version"
ln -sfn "libmetafed.so.$version" "$lib/libmetafed.so.$major"
ln -sfn "libmetafed.so.$major" "$lib/libmetafed.so"
install -m 644 "$built/libmetafed.a" "$lib/libmetafed.a"
strip --strip-debug "$lib/libmetafed.a"

# What a static link needs besides the archive: rustc's `--print native-static-libs` on Linux
# (the Rust standard library's system libraries; metafed adds none).
private="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
cat > "$lib/pkgconfig/metafed.pc" <<EOF
prefix=$prefix
libdir=$libdir
includedir=\${prefix}/include

Name: metafed
Description: A three-level meta-federation task engine with circuit breakers at every level
Version: $version
Libs: -L\${libdir} -lmetafed
Libs.private: $private
Cflags: -I\${includedir}
EOF

# The CMake package finds its prefix from its own location, so a staged or moved tree works.
rel="$(realpath -m --relative-to="$libdir/cmake/metafed" "$prefix")"
cat > "$lib/cmake/metafed/metafedConfig.cmake" <<EOF
# metafed $version, installed by scripts/install.sh. Targets:
#   metafed::metafed         the shared library (soname libmetafed.so.$major)
#   metafed::metafed_static  the static library, with the system libraries it needs
get_filename_component(_metafed_prefix "\${CMAKE_CURRENT_LIST_DIR}/$rel" ABSOLUTE)
get_filename_component(_metafed_libdir "\${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
include(CMakeFindDependencyMacro)
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_dependency(Threads)
if(NOT TARGET metafed::metafed)
  add_library(metafed::metafed SHARED IMPORTED)
  set_target_properties(metafed::metafed PROPERTIES
    IMPORTED_LOCATION "\${_metafed_libdir}/libmetafed.so.$version"
    IMPORTED_SONAME "libmetafed.so.$major"
    INTERFACE_INCLUDE_DIRECTORIES "\${_metafed_prefix}/include")
endif()
if(NOT TARGET metafed::metafed_static)
  add_library(metafed::metafed_static STATIC IMPORTED)
  set_target_properties(metafed::metafed_static PROPERTIES
    IMPORTED_LOCATION "\${_metafed_libdir}/libmetafed.a"
    INTERFACE_INCLUDE_DIRECTORIES "\${_metafed_prefix}/include"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;gcc_s;util;rt;m;dl")
endif()
set(metafed_VERSION $version)
unset(_metafed_prefix)
unset(_metafed_libdir)
EOF
cat > "$lib/cmake/metafed/metafedConfigVersion.cmake" <<EOF
# Compatible when the major version (the soname's) is the one asked for, and not older.
set(PACKAGE_VERSION "$version")
# (Compared as text: a request for major version 0 is a version too, not "none".)
if(NOT "\${PACKAGE_FIND_VERSION}" STREQUAL "" AND NOT "\${PACKAGE_FIND_VERSION_MAJOR}" STREQUAL "$major")
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
elseif(PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
EOF
echo "installed metafed $version into $destdir$prefix (libraries in $destdir$libdir)"
