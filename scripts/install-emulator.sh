#!/usr/bin/env bash
# Makes sure the local AWS emulator (fakecloud 0.51.0) is installed, once for
# every command that needs it (make demo, sandbox, test, bench): any install
# of that version is reused, whatever profile built it (a release install
# from `cargo install fakecloud` included).
#
# The first time it is compiled from its published source with the dev
# profile and no debug info: about 11 minutes on 2 cores instead of about 40
# for a release build, and the emulator serves the sandbox as fast (the
# measurements are in BENCHMARKS.md). fakecloud is AGPL-3.0: we only run it as
# a separate program, never link it.
set -euo pipefail
version="0.51.0"
for bin in "${FAKECLOUD_BIN:-}" fakecloud "${CARGO_HOME:-$HOME/.cargo}/bin/fakecloud"; do
    [[ -n "$bin" ]] || continue
    if "$bin" --version 2>/dev/null | grep -q "$version"; then
        echo "emulator: $("$bin" --version) ($(command -v "$bin" || echo "$bin"))"
        exit 0
    fi
done

# About this many crates are compiled (counted on fakecloud 0.51.0's lock file).
crates=660
log="${TMPDIR:-/tmp}/fakecloud-install.$$.log"
echo "emulator: installing fakecloud $version, the local AWS emulator the sandbox and the end-to-end tests run on,"
echo "emulator: into ${CARGO_HOME:-$HOME/.cargo}/bin. It is compiled from source once (~$crates crates, about 11 minutes"
echo "emulator: on 2 cores); every later command reuses it. Full log: $log"
start=$(date +%s)
# Dev profile without debug info: the emulator needs neither the optimizer's
# hours of CPU nor 1.3 GB of debug info (dev: 0.46 GB binary, with it 1.8 GB).
set +e
CARGO_PROFILE_DEV_DEBUG=0 cargo install fakecloud --version "$version" --locked --debug >"$log" 2>&1 &
pid=$!
last=0
while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    done_crates=$(grep -c '^ *Compiling ' "$log" 2>/dev/null)
    now=$(date +%s)
    if (( now - last >= 60 )); then
        echo "emulator: $done_crates/~$crates crates compiled, $(( (now - start) / 60 )) min $(( (now - start) % 60 )) s"
        last=$now
    fi
done
wait "$pid"
status=$?
set -e
if (( status != 0 )); then
    tail -n 40 "$log" >&2
    echo "emulator: cargo install fakecloud failed (exit $status); the whole log is $log" >&2
    exit "$status"
fi
rm -f "$log"
echo "emulator: fakecloud $version installed in $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s"
