#!/usr/bin/env bash
# Install the web client (Converse.js) and the browser test's driver (playwright-core) from
# web/package-lock.json into web/node_modules with `npm ci`, when they are missing or the lock
# file changed since. Never downloads a browser: the tests use Debian's chromium.
# Without npm it says how to get it and returns 1 (the server still runs; its page at / says
# how to install the web client).
set -euo pipefail
cd "$(dirname "$0")/../web"
stamp=node_modules/.hongyan-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "web client not installed: npm (Node.js) is missing; install Node.js and npm," \
         "then run: npm ci --prefix web" >&2
    exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json "$stamp"
