#!/usr/bin/env bash
# What the page's browser test needs: Debian's Chromium (/usr/bin/chromium;
# browser downloads through `npx playwright install` fail here, so never) and
# playwright-core from tools/ (pinned in tools/package.json).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ ! -x /usr/bin/chromium ]]; then
    echo "install-browser: installing Debian's chromium (apt-get)"
    sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null)"
want=$(node -p 'require("./tools/package.json").devDependencies["playwright-core"]')
have=$(node -p 'try { require("./tools/node_modules/playwright-core/package.json").version } catch { "" }')
if [[ "$have" != "$want" ]]; then
    echo "install-browser: installing tools/ node packages (playwright-core $want)"
    npm ci --prefix tools --no-audit --no-fund
fi
echo "install-browser: playwright-core $want"
