#!/usr/bin/env bash
# Contract test: Schemathesis (pinned) generates requests from
# infra/openapi.yaml — valid ones, and ones that break exactly one rule of the
# spec — and sends them to the sandbox's API (the same router as the Lambda
# functions); every answer must be what the spec declares: a declared status
# and content type, a body that fits its schema, valid input accepted,
# invalid input refused, 405 with `Allow` for an undeclared method.
#
# Deterministic and bounded: a fixed seed, no example database carried from
# one run to the next, at most $MAX_EXAMPLES generated cases per operation
# and phase, one worker; the sandbox starts empty (--no-seed), so a run does
# not depend on what another left. The sandbox is stopped on every exit path.
#
# Needs the sandbox binary (`make tests` builds it; built here otherwise) and
# python3 with venv; installs Schemathesis into a virtualenv under tools/
# (reused while it holds the pinned version).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

SCHEMATHESIS_VERSION="4.32.5"
SEED="${CONTRACT_SEED:-20261201}"
MAX_EXAMPLES="${CONTRACT_MAX_EXAMPLES:-50}"

# ------------------------------------------------------------ Schemathesis
venv="tools/venv/schemathesis-$SCHEMATHESIS_VERSION"
st="$venv/bin/schemathesis"
pinned() { [[ "$("$st" --version 2>/dev/null || true)" == "schemathesis, version $SCHEMATHESIS_VERSION" ]]; }
if ! pinned; then
    echo "contract: installing schemathesis==$SCHEMATHESIS_VERSION with pip into a virtualenv at $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "schemathesis==$SCHEMATHESIS_VERSION"
    pinned || { echo "contract: $st is not schemathesis $SCHEMATHESIS_VERSION after the install" >&2; exit 1; }
fi
echo "contract: using $("$st" --version) ($st)"

# ------------------------------------------------------------------ sandbox
# AUTOSKY_SANDBOX_BIN: another build of it (e.g. a copy, where several
# worktrees share one CARGO_TARGET_DIR and overwrite each other's binary).
sandbox="${AUTOSKY_SANDBOX_BIN:-${CARGO_TARGET_DIR:-target}/debug/autosky-sandbox}"
if [[ ! -x "$sandbox" ]]; then
    echo "contract: $sandbox is missing; building it"
    ${CARGO:-cargo} build -p autosky-sandbox
fi

out="$root/target/contract"
rm -rf "$out"
mkdir -p "$out"
log="$out/sandbox.log"
pid=""
st_pid=""
stop_sandbox() {
    if [[ -n "$st_pid" ]] && kill -0 "$st_pid" 2>/dev/null; then
        kill -TERM "$st_pid" 2>/dev/null || true
        wait "$st_pid" 2>/dev/null || true
    fi
    st_pid=""
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        # SIGTERM: the sandbox stops its workers and the emulator, then exits.
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        # Still there after 10 s: SIGKILL (the emulator dies with it).
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    pid=""
}
trap stop_sandbox EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$(date +%s)
# The log exists before the sandbox starts writing it: the loop below reads it at once.
: >"$log"
"$sandbox" up --no-seed </dev/null >>"$log" 2>&1 &
pid=$!
api=""
for _ in $(seq 1 1200); do
    api="$(sed -n 's/^API: \(http:\/\/127\.0\.0\.1:[0-9]*\)$/\1/p' "$log" || true)"
    [[ -n "$api" ]] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        cat "$log" >&2
        echo "contract: the sandbox exited before it was up" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$api" ]]; then
    cat "$log" >&2
    echo "contract: the sandbox printed no API endpoint within 120 s" >&2
    exit 1
fi
echo "contract: sandbox API at $api (up in $(( $(date +%s) - start )) s)"

# ------------------------------------------------------------------- checks
# Every check that applies to this API, less the exclusions below, each for
# what the sandbox does by design:
#  - ignored_auth off, and no security parameters generated
#    (generation.with-security-parameters = false), everywhere: the sandbox
#    stands in for API Gateway's authorizer and gives every request its one
#    local identity, so a request without `Authorization` is served (with
#    them, missing_required_header and negative_data_rejection fail on
#    "missing Authorization" for this reason alone). In AWS the gateway
#    refuses an unsigned request before the function runs; the router's own
#    401 (no identity) is a unit test for every route.
#  - positive_data_acceptance, putEnvironment: 422 is expected too. A
#    schema-valid body names an instance, a launch template and groups that
#    do not exist in the sandbox (nobody can guess ids), which the API
#    rightly refuses with 422. 400 is expected too, for the two rules of the
#    instance refresh preferences the spec states in words (checkpoint
#    percentages in ascending order; a checkpoint delay only with
#    checkpoints): the check environment_refusals_are_the_rules_stated_in_words
#    (scripts/contract_hooks.py) fails any other 400.
#  - positive_data_acceptance, scheduleDeployment: 400 is expected too. A
#    schema-valid `at` is almost never within the scheduling window (now +
#    60 s to now + 1 year), and may name a date that does not exist
#    (2026-02-30), a local time in a clock change, or a `timezone` the
#    database lacks — rules the spec states in words because JSON Schema
#    cannot. The check schedule_refusals_are_the_rules_stated_in_words
#    (scripts/contract_hooks.py) then fails any such 400 that is not one of
#    those rules, so a schema rule the API disagrees with still fails.
# (The stateful checks stay on: the stateful phase follows the links
# Schemathesis infers between operations, and with no environment in the
# sandbox they end in 404s. too_slow is suppressed: on a busy 2-core machine
# Hypothesis's timing health check would fail a run for no fault of the API.)
config="$out/schemathesis.toml"
cat >"$config" <<EOF
seed = $SEED
hooks = "$root/scripts/contract_hooks.py"
workers = 1
request-timeout = 10.0
suppress-health-check = ["too_slow"]

# No state carried from one run to the next (the cache keeps what a run
# learned about the API; the example database, the cases that failed).
[cache]
enabled = false

[generation]
max-examples = $MAX_EXAMPLES
database = "none"
with-security-parameters = false

[checks]
ignored_auth.enabled = false

[[operations]]
include-operation-id = "putEnvironment"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409", "422"]

[[operations]]
include-operation-id = "scheduleDeployment"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409"]
EOF

echo "contract: schemathesis run infra/openapi.yaml --url $api (seed $SEED, at most $MAX_EXAMPLES cases per operation and phase)"
run_start=$(date +%s)
rc=0
# In the background, so that a SIGTERM to this script is handled at once
# (bash runs a trap only after the foreground command ends), not after the run.
"$st" --config-file "$config" run infra/openapi.yaml \
    --url "$api" \
    --report junit --report-junit-path "$out/junit.xml" \
    --no-color >"$out/schemathesis.txt" 2>&1 &
st_pid=$!
wait "$st_pid" || rc=$?
st_pid=""
took=$(( $(date +%s) - run_start ))
stop_sandbox

# The one-line summary, from the run's own totals ("Tested: <n>" operations;
# "Test cases:" then "<n> generated, <n> passed[, <n> errored][, <n> found
# <n> unique failures]").
report="$out/schemathesis.txt"
operations="$(sed -n 's/^ *Tested: *\([0-9]*\).*/\1/p' "$report" | tail -n 1)"
totals="$(grep -A1 '^Test cases:' "$report" | tail -n 1 || true)"
cases="$(sed -n 's/^ *\([0-9]*\) generated.*/\1/p' <<<"$totals")"
failures="$(sed -n 's/.* \([0-9]*\) unique failures\{0,1\}.*/\1/p' <<<"$totals")"
errored="$(sed -n 's/.* \([0-9]*\) errored.*/\1/p' <<<"$totals")"
if [[ $rc -ne 0 ]]; then
    cat "$out/schemathesis.txt"
    echo "contract: FAILED: ${operations:-?} operations, ${cases:-?} test cases generated, ${failures:-0} failures, ${errored:-0} errors in $took s (schemathesis exit $rc; output and JUnit report in $out)" >&2
    exit 1
fi
echo "contract: ${operations:-?} operations, ${cases:-?} test cases generated, ${failures:-0} failures, ${errored:-0} errors in $took s (schemathesis $SCHEMATHESIS_VERSION, seed $SEED)"
