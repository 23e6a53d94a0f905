#!/usr/bin/env bash
# Regenerate requirements.lock: every Python package the project installs (runtime + test tools), transitive ones
# included, at an exact version with hashes, one version per package for every supported Python (3.10-3.12) and
# platform. Run it only to upgrade on purpose (a new torch, a security fix), then run the whole suite and the demo
# from a fresh clone before committing the new lock. `setup.sh` and the Dockerfile install from the lock alone.
#
# Needs `uv` (`python3 -m pip install uv`); it resolves against PyPI and ignores this machine's pip configuration,
# so check the result installs with plain pip: `bash scripts/setup.sh` in a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null || { echo "lock: needs uv: python3 -m pip install uv" >&2; exit 2; }
uv pip compile pyproject.toml --extra dev \
  --universal --fork-strategy fewest --python-version 3.10 \
  --generate-hashes --quiet \
  --output-file requirements.lock "$@"
echo "lock: wrote requirements.lock ($(grep -c '^[a-z]' requirements.lock) packages)"
