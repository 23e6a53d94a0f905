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
    || echo "test.sh: could not install chromium + chromium-driver; the browser test will skip"
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
