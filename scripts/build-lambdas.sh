#!/usr/bin/env bash
# Builds the eight function bootstraps (six steps and the API's two) with cargo-lambda (release profile) and
# prints each one's size, stripped and zipped. Installs cargo-lambda with pip
# when it is missing (it ships its own zig, nothing else is downloaded).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
functions=(validate stop-preparation-server create-image create-models replace-instances finalize resume api schedules)

if [[ "${1:-}" != "--sizes-only" ]]; then
    if ! command -v cargo-lambda >/dev/null 2>&1; then
        echo "build-lambdas: installing cargo-lambda with pip (one time)"
        python3 -m pip install --disable-pip-version-check --quiet cargo-lambda
        hash -r
    fi
    args=()
    for f in "${functions[@]}"; do args+=(--bin "$f"); done
    # The cold-start floor make bench compares the functions with (never deployed).
    args+=(--bin floor)
    # ARCH=arm64 builds what template.yaml deploys; the default is this machine's arch.
    if [[ "${ARCH:-}" == "arm64" ]]; then args+=(--arm64); fi
    cargo lambda build --release "${args[@]}"
fi

printf '%-26s %12s %12s\n' function "stripped B" "zipped B"
for f in "${functions[@]}"; do
    b="target/lambda/$f/bootstrap"
    [[ -f "$b" ]] || { echo "build-lambdas: $b is missing" >&2; exit 1; }
    zipped=$(python3 - "$b" <<'PY'
import io, sys, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    z.write(sys.argv[1], "bootstrap")
print(len(buf.getvalue()))
PY
)
    printf '%-26s %12d %12d\n' "$f" "$(stat -c %s "$b")" "$zipped"
done
