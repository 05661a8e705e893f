#!/usr/bin/env bash
# Lints the infrastructure: the SAM template with cfn-lint, its IAM, data
# protection and logging policy with the cfn-guard rules in infra/guard/ (and
# those rules with their unit tests in infra/guard/tests/), and the state
# machine definition with asl-validator (scripts/asl-check.sh). Installs the
# pinned tools first when they are missing or at another version, so it works
# on a fresh machine that has python3 (with pip) and node/npm.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

CFN_LINT_VERSION="1.53.3"

# ---------------------------------------------------------------- cfn-lint
# The pinned cfn-lint comes from, in order: the PATH; this Python's modules
# (a `pip install --user` whose bin directory is not on the PATH); a
# virtualenv outside the repo that this script made before. Otherwise pip
# installs it into this Python, or, where that Python refuses (an externally
# managed system Python), into that virtualenv.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/autosky/cfn-lint-$CFN_LINT_VERSION"
cfn_lint_module=(python3 -c 'import sys; from cfnlint.runner import main; sys.argv[0] = "cfn-lint"; sys.exit(main())')
cfn_lint=()
pinned() { [[ "$("$@" --version 2>/dev/null || true)" == "cfn-lint $CFN_LINT_VERSION" ]]; }
find_cfn_lint() {
    if pinned cfn-lint; then
        cfn_lint=(cfn-lint)
    elif pinned "${cfn_lint_module[@]}"; then
        cfn_lint=("${cfn_lint_module[@]}")
    elif pinned "$venv/bin/cfn-lint"; then
        cfn_lint=("$venv/bin/cfn-lint")
    else
        return 1
    fi
}

if ! find_cfn_lint; then
    found="$(cfn-lint --version 2>/dev/null || true)"
    echo "lint-infra: installing cfn-lint==$CFN_LINT_VERSION with pip (found: ${found:-none})"
    if python3 -m pip install --disable-pip-version-check --quiet "cfn-lint==$CFN_LINT_VERSION"; then
        hash -r
    fi
    if ! find_cfn_lint; then
        echo "lint-infra: pip could not install it into $(command -v python3); installing cfn-lint==$CFN_LINT_VERSION into a virtualenv at $venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "cfn-lint==$CFN_LINT_VERSION"
        find_cfn_lint || { echo "lint-infra: cfn-lint $CFN_LINT_VERSION is still not runnable" >&2; exit 1; }
    fi
fi
echo "lint-infra: using $("${cfn_lint[@]}" --version) (${cfn_lint[0]})"

# ------------------------------------------- asl-validator and cfn-guard
# Both come from tools/package.json: asl-validator, and cfn-guard as the binary
# that @cdklabs/cdk-validator-cfnguard ships for each platform.
case "$(uname -s)/$(uname -m)" in
    Linux/x86_64 | Linux/amd64) cfn_guard_platform=ubuntu/x86_64 ;;
    Linux/aarch64 | Linux/arm64) cfn_guard_platform=ubuntu/aarch64 ;;
    Darwin/x86_64) cfn_guard_platform=macos/x86_64 ;;
    Darwin/arm64) cfn_guard_platform=macos/aarch64 ;;
    *)
        echo "lint-infra: no cfn-guard binary for $(uname -s) $(uname -m): @cdklabs/cdk-validator-cfnguard ships Linux and macOS x86_64/aarch64 only; run this on one of those (e.g. x86_64 Linux)" >&2
        exit 1
        ;;
esac
cfn_guard="tools/node_modules/@cdklabs/cdk-validator-cfnguard/bin/$cfn_guard_platform/cfn-guard"

# Every devDependency of tools/package.json installed at its pinned version.
tools_installed() {
    node -e '
        const pinned = require("./tools/package.json").devDependencies;
        for (const [name, version] of Object.entries(pinned)) {
            let installed;
            try { installed = require(`./tools/node_modules/${name}/package.json`).version; } catch { process.exit(1); }
            if (installed !== version) process.exit(1);
        }' 2>/dev/null
}

if ! tools_installed || [[ ! -x tools/node_modules/.bin/asl-validator || ! -x "$cfn_guard" ]]; then
    if [[ -f tools/package-lock.json ]]; then
        echo "lint-infra: installing tools/ node packages: npm ci --prefix tools (asl-validator, cfn-guard)"
        npm ci --prefix tools --no-audit --no-fund
    else
        echo "lint-infra: installing tools/ node packages: npm install --prefix tools (asl-validator, cfn-guard)"
        npm install --prefix tools --no-audit --no-fund
    fi
fi
if [[ ! -x "$cfn_guard" ]]; then
    echo "lint-infra: $cfn_guard is missing after the install" >&2
    exit 1
fi
if ! cfn_guard_version="$("$cfn_guard" --version 2>&1)"; then
    echo "lint-infra: $cfn_guard does not run on this machine ($(uname -s) $(uname -m)): $cfn_guard_version" >&2
    exit 1
fi
echo "lint-infra: using $cfn_guard_version ($cfn_guard)"

# ------------------------------------------------------------------ checks
echo "lint-infra: cfn-lint template.yaml"
"${cfn_lint[@]}" template.yaml
echo "lint-infra: cfn-lint template.yaml: no errors or warnings"

# cfn-guard validate exits 19 when a rule fails (5 on a rule file it cannot
# parse); its report names the rule, the resource and the offending property.
shopt -s nullglob
guard_rules=(infra/guard/*.guard)
shopt -u nullglob
if [[ ${#guard_rules[@]} -eq 0 ]]; then
    echo "lint-infra: no cfn-guard rules in infra/guard/" >&2
    exit 1
fi
rule_args=()
for rules in "${guard_rules[@]}"; do
    rule_args+=(-r "$rules")
done
echo "lint-infra: cfn-guard validate template.yaml (${guard_rules[*]})"
guard_rc=0
guard_out="$("$cfn_guard" validate "${rule_args[@]}" -d template.yaml --show-summary all 2>&1)" || guard_rc=$?
if [[ $guard_rc -ne 0 ]]; then
    echo "$guard_out"
    echo "lint-infra: cfn-guard: template.yaml breaks the rules above (cfn-guard exit $guard_rc)" >&2
    exit 1
fi
passed="$(grep -cE '^[^ ]+\.guard/[^ ]+ +PASS$' <<<"$guard_out" || true)"
skipped="$(grep -cE '^[^ ]+\.guard/[^ ]+ +SKIP$' <<<"$guard_out" || true)"
echo "lint-infra: cfn-guard: $passed rules passed, $skipped not applicable (${#guard_rules[@]} rule files)"

# The rules' own unit tests: infra/guard/tests/<rules>_tests.yaml for each
# infra/guard/<rules>.guard (cfn-guard test exits non-zero on a mismatch).
cases=0
expectations=0
for rules in "${guard_rules[@]}"; do
    tests="infra/guard/tests/$(basename "$rules" .guard)_tests.yaml"
    if [[ ! -f "$tests" ]]; then
        echo "lint-infra: $rules has no unit tests: add $tests" >&2
        exit 1
    fi
    test_rc=0
    test_out="$("$cfn_guard" test -r "$rules" -t "$tests" -o junit 2>&1)" || test_rc=$?
    total="$(sed -n 's/.*<testsuites [^>]*tests="\([0-9]*\)".*/\1/p' <<<"$test_out")"
    failures="$(sed -n 's/.*<testsuites [^>]*failures="\([0-9]*\)".*/\1/p' <<<"$test_out")"
    if [[ $test_rc -ne 0 || -z "$total" || "$failures" != 0 ]]; then
        "$cfn_guard" test -r "$rules" -t "$tests" || true
        echo "lint-infra: cfn-guard test $rules: failed (cfn-guard exit $test_rc)" >&2
        exit 1
    fi
    cases=$((cases + $(grep -c '^- name:' "$tests")))
    expectations=$((expectations + total))
done
echo "lint-infra: cfn-guard test: $cases test cases, $expectations rule expectations passed (infra/guard/tests)"

echo "lint-infra: ASL check"
scripts/asl-check.sh

echo "lint-infra: all infrastructure checks passed"
