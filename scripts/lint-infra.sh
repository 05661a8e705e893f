#!/usr/bin/env bash
# Lints the infrastructure: the SAM template with cfn-lint and the state
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

# ----------------------------------------------------------- asl-validator
if [[ ! -x tools/node_modules/.bin/asl-validator ]]; then
    if [[ -f tools/package-lock.json ]]; then
        echo "lint-infra: installing tools/ node packages: npm ci --prefix tools (asl-validator)"
        npm ci --prefix tools --no-audit --no-fund
    else
        echo "lint-infra: installing tools/ node packages: npm install --prefix tools (asl-validator)"
        npm install --prefix tools --no-audit --no-fund
    fi
fi

# ------------------------------------------------------------------ checks
echo "lint-infra: cfn-lint template.yaml"
"${cfn_lint[@]}" template.yaml
echo "lint-infra: cfn-lint template.yaml: no errors or warnings"

echo "lint-infra: ASL check"
scripts/asl-check.sh

echo "lint-infra: all infrastructure checks passed"
