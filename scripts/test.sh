#!/usr/bin/env bash
# The test suite, from a fresh machine: installs what it needs, then runs pytest (hermetic: no network, no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
