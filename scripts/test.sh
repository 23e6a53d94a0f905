#!/usr/bin/env bash
# The test suite, from a fresh machine: installs what it needs, then runs pytest (hermetic: no network, no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The web page's browser test (tests/serve/test_page.py) drives Debian's chromium; it skips when it is missing.
if ! command -v chromedriver >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  # Bounded: a stalled mirror must not eat CI's time limit (the install takes ~1 min when the mirror answers).
  { timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq \
      --no-install-recommends chromium chromium-driver; } >/dev/null 2>&1 \
    || printf '\n!!! test.sh: could not install chromium + chromium-driver: the browser tests of the web page WILL SKIP\n!!! (tests/serve/test_page.py); their skip reasons are listed at the end of the run\n\n' >&2
fi
# -rs: every skipped test and its reason in the summary (the CI log is the only place anyone would see them).
exec .venv/bin/python -m pytest -q -rs -p no:cacheprovider "$@"
