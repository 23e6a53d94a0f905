#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian/Ubuntu machine: the speech-synthesis packages the
# built-in corpus uses (when missing), a .venv with Python 3.10-3.12, and the package with its test tools.
# Idempotent and quick when nothing changed (a stamp records the pyproject.toml it installed).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
command -v flite >/dev/null || need_apt+=(flite)
[ -e /usr/share/wordnet/data.noun ] || need_apt+=(wordnet-base)
ldconfig -p 2>/dev/null | grep -q libsndfile || need_apt+=(libsndfile1)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=""
for cand in ${PYTHON:-} python3.12 python3.11 python3.10 python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(not ((3,10) <= sys.version_info[:2] <= (3,12)))' 2>/dev/null; then
    PY="$cand"; break
  fi
done
[ -n "$PY" ] || { echo "setup: need Python 3.10-3.12 (flashlight-text has no wheels for newer); set PYTHON=..." >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.asr-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into .venv (first time: torch is a large download)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
