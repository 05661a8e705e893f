#!/usr/bin/env bash
# Builds what `make demo` and `make sandbox` run: the local AWS emulator
# (installed once, see install-emulator.sh) and the sandbox binary. On a
# first run both compile at the same time: each build has stretches where
# one core idles (a single large crate such as the EC2 SDK, build scripts,
# the final link), and the other build fills them. Later runs find both
# built and take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-emulator.sh &
emulator=$!
status=0
${CARGO:-cargo} build -p autosky-sandbox || status=$?
wait "$emulator" || status=$?
exit "$status"
