#!/usr/bin/env bash
# The status page's browser test (status_page_test.mjs) against the mock admin API
# (mock-admin.mjs): the page itself, charts included, in headless Chromium without a daemon.
# intake_and_watch_test.sh runs the same test against a real daemon. Skips (77) without Chromium
# or playwright-core. SCREENSHOT=path.png keeps a full-page screenshot.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "no Chromium at ${CHROMIUM:-/usr/bin/chromium}: skipped"; exit 77; }
[ -d "$root/tests/node/node_modules/playwright-core" ] || { echo "no playwright-core (npm ci in tests/node): skipped"; exit 77; }
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
node "$root/tests/browser/mock-admin.mjs" 0 > "$work/mock.out" 2>&1 &
mock=$!
trap 'kill "$mock" 2>/dev/null; wait "$mock" 2>/dev/null; rm -rf "$work"' EXIT
wait_for 10 grep -q 'mock admin server on' "$work/mock.out" || { echo "the mock did not start:"; cat "$work/mock.out"; exit 1; }
url=$(sed -n 's|.* on \(http://[^/]*\)/.*|\1|p' "$work/mock.out")
# The mock's day: its p95 over the hours it serves is 4 s (mock-admin.mjs, HOURS).
EXPECT_P95_LABEL='p95 ≤ 4 s' node "$root/tests/browser/status_page_test.mjs" "$url" demo-proc-0001 "${SCREENSHOT:-$work/page.png}"
