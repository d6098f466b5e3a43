#!/usr/bin/env bash
# Builds and runs the C and C++ tests against target/release/libmetafed.so, with
# AddressSanitizer and UBSan. Run scripts/test-all.sh (or `cargo build --release`) first.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
lib="$root/target/release"
out="$root/target/ctests"
mkdir -p "$out"
test -f "$lib/libmetafed.so" || { echo "missing $lib/libmetafed.so: run cargo build --release" >&2; exit 1; }
# The library's soname is libmetafed.so.1; the build puts its link beside libmetafed.so.
readelf -d "$lib/libmetafed.so" | grep -q 'SONAME.*libmetafed.so.1' || { echo "libmetafed.so has no soname" >&2; exit 1; }
test "$(readlink "$lib/libmetafed.so.1")" = libmetafed.so || { echo "the build made no libmetafed.so.1 link" >&2; exit 1; }
warn=(-Wall -Wextra -Werror -pedantic)
san=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g)
link=(-L"$lib" -lmetafed -Wl,-rpath,"$lib" -pthread)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export LSAN_OPTIONS="suppressions=$root/tests/c/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1"

# The header on its own, as C99 and C++17.
gcc -std=c99 "${warn[@]}" -I"$root/include" -c "$root/tests/c/header_twice.c" -o "$out/header_twice.o"
g++ -std=c++17 "${warn[@]}" -I"$root/include" -x c++ -c "$root/tests/c/header_twice.c" -o "$out/header_twice_cpp.o"

for t in w1 faults bad_args deferred ops growth queue balance old_reasons reroute classify completion_queue; do
  gcc -std=c99 "${warn[@]}" "${san[@]}" -I"$root/include" "$root/tests/c/$t.c" -o "$out/$t" "${link[@]}"
  echo "-- $t"
  "$out/$t"
done
g++ -std=c++17 "${warn[@]}" "${san[@]}" -I"$root/include" "$root/tests/c/cpp17.cpp" -o "$out/cpp17" "${link[@]}"
echo "-- cpp17"
"$out/cpp17"

# Programs built against an earlier header of ABI 1 run against this library: the tests, as
# compiled against the 1.0 header kept in tests/c/compat/ (the struct_size rule serves them).
for v in 1.0; do
  for t in w1 faults bad_args deferred ops; do
    gcc -std=c99 "${warn[@]}" "${san[@]}" -I"$root/tests/c/compat/$v" "$root/tests/c/$t.c" -o "$out/${t}_$v" "${link[@]}"
    echo "-- $t, built against the $v header"
    "$out/${t}_$v"
  done
  g++ -std=c++17 "${warn[@]}" "${san[@]}" -I"$root/tests/c/compat/$v" "$root/tests/c/cpp17.cpp" -o "$out/cpp17_$v" "${link[@]}"
  echo "-- cpp17, built against the $v header"
  "$out/cpp17_$v"
done

# Every C program in README.md and docs/, as printed there.
python3 "$root/tests/c/snippets.py" "$out/snippets" > "$out/snippets.list"
for src in $(cat "$out/snippets.list"); do
  exe="${src%.c}"
  gcc -std=c99 "${warn[@]}" "${san[@]}" -I"$root/include" "$src" -o "$exe" "${link[@]}"
  echo "-- $(head -1 "$src" | sed 's|/\* \(.*\) \*/|\1|')"
  "$exe"
done

# The example client builds with its documented command line (static library).
(cd "$root" && cc -std=c99 -O2 "${warn[@]}" examples/c/client.c -Iinclude target/release/libmetafed.a -lpthread -ldl -lm -o "$out/client")
echo "-- examples/c/client"
"$out/client" > /dev/null
# The example with a real agent: GETs from an HTTP server on the loopback interface (Python's),
# then from its port once the server is gone (the fallback agent answers every task), built with
# the sanitizers; and with its documented command line.
(cd "$root" && cc -std=c99 -O2 "${warn[@]}" examples/c/http_agent.c -Iinclude target/release/libmetafed.a -lpthread -ldl -lm -o "$out/http_agent_static")
gcc -std=c99 "${warn[@]}" "${san[@]}" -I"$root/include" "$root/examples/c/http_agent.c" -o "$out/http_agent" "${link[@]}"
www="$out/www"; mkdir -p "$www"; echo "hello from a real service" > "$www/hello.txt"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$www" > "$out/http_server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
port=""
for _ in $(seq 100); do
  port="$(sed -n 's/^Serving HTTP on .* port \([0-9]*\).*/\1/p' "$out/http_server.log")"
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "the HTTP server did not start:" >&2; cat "$out/http_server.log" >&2; exit 1; }
echo "-- examples/c/http_agent against http://127.0.0.1:$port/hello.txt"
"$out/http_agent" "127.0.0.1:$port" /hello.txt 400 | tee "$out/http_agent.out"
grep -q "400 of 400 tasks ok" "$out/http_agent.out"
served="$(sed -n 's/.*tasks ok, \([0-9]*\) answered by the service.*/\1/p' "$out/http_agent.out")"
[ "${served:-0}" -ge 200 ] || { echo "the service answered ${served:-no} tasks of 400" >&2; exit 1; }
"$out/http_agent_static" "127.0.0.1:$port" /hello.txt 100 > /dev/null
kill $server 2>/dev/null || { echo "the HTTP server died early:" >&2; cat "$out/http_server.log" >&2; exit 1; }
wait $server 2>/dev/null || true
trap - EXIT
# Its port is free again (another program could take it in between: unlikely on a test machine).
echo "-- examples/c/http_agent with the server gone"
"$out/http_agent" "127.0.0.1:$port" /hello.txt 400 | tee "$out/http_agent.out"
grep -q "400 of 400 tasks ok, 0 answered by the service" "$out/http_agent.out"
echo "C and C++ tests passed"
