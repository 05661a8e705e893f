#!/usr/bin/env bash
# Makes sure the local AWS emulator (fakecloud 0.51.0) is installed. The first
# time, `cargo install` compiles it from source: about 40 minutes on 2 cores
# (it emulates ~100 AWS services); later runs reuse ~/.cargo/bin/fakecloud.
# fakecloud is AGPL-3.0: we only run it as a separate program, never link it.
set -euo pipefail
version="0.51.0"
for bin in "${FAKECLOUD_BIN:-}" fakecloud "${CARGO_HOME:-$HOME/.cargo}/bin/fakecloud"; do
    [[ -n "$bin" ]] || continue
    if "$bin" --version 2>/dev/null | grep -q "$version"; then
        echo "emulator: $("$bin" --version) ($(command -v "$bin" || echo "$bin"))"
        exit 0
    fi
done
echo "emulator: installing fakecloud $version, the local AWS emulator the sandbox and end-to-end tests run on."
echo "emulator: it is compiled from source once: about 40 minutes on 2 cores; later runs reuse it."
cargo install fakecloud --version "$version" --locked
