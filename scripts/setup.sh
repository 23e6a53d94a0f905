#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian/Ubuntu machine: the speech-synthesis packages the
# built-in corpus uses (when missing), a .venv with Python 3.10-3.12, every Python package at the exact version
# of requirements.lock (hash-checked; nothing else is resolved), and this package itself (editable, no deps).
# Then a post-install check: one line naming the broken piece and the fix, if any.
# Idempotent and quick when nothing changed (a stamp records the lock and pyproject it installed).
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
want="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the locked Python packages into .venv (first time: torch is a large download)"
  # --require-hashes + --no-deps: exactly the lock, nothing resolved at install time, so an upstream release
  # cannot change a fresh machine (torchaudio 2.11.1 once broke every fresh install). Warnings about this
  # machine's pip index folders are noise; errors still show.
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements.lock 2> >(grep -v "^WARNING: Location" >&2)
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2> >(grep -v "^WARNING: Location" >&2)
  echo "$want" > "$stamp"
fi
.venv/bin/python scripts/check_install.py
