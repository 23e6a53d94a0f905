#!/usr/bin/env bash
# Build the project's Docker image without Docker Hub, then smoke-test it: the way to build and check the image on
# a machine that reaches only Debian's mirror and PyPI (as root, with buildah and debootstrap installed:
# `apt-get install -y buildah debootstrap`).
#
#   bash scripts/build_image.sh [TAG]        # default tag: localhost/asr:local
#
# 1. A Debian bookworm base with Python 3.11 (the same Debian and Python minor version as the official
#    python:3.11-slim-bookworm image the Dockerfile defaults to) is bootstrapped from the Debian mirror with
#    debootstrap and imported as localhost/asr-base:bookworm (once per machine; remove it with
#    `buildah rmi localhost/asr-base:bookworm` to rebuild it).
# 2. The Dockerfile is built on it with `buildah build --isolation chroot --build-arg BASE_IMAGE=...` (layers are
#    cached, so a rebuild after a code change reinstalls nothing).
# 3. Inside the image: scripts/check_install.py, then a tiny corpus, a 30-step training run and one asr-transcribe
#    call (`buildah run --isolation chroot`; `podman run` cannot set rlimits in some sandboxes).
# Exit status: 0 built and checked; 2 a tool is missing or we are not root (the message says what to install);
# anything else, the step that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${1:-localhost/asr:local}
BASE=localhost/asr-base:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=${ASR_IMAGE_WORK:-/var/tmp/asr-image}

missing=()
for tool in buildah debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "$(id -u)" != 0 ] || [ ${#missing[@]} -gt 0 ]; then
  echo "build_image: needs root and buildah + debootstrap (missing: ${missing[*]:-none}; uid $(id -u));" \
       "install them with: apt-get install -y buildah debootstrap" >&2
  exit 2
fi

say() { echo "build_image: $*"; }

if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  say "bootstrapping the base $BASE from $MIRROR (Debian bookworm + python3, a few minutes, once per machine)"
  mkdir -p "$WORK"
  rootfs=$(mktemp -d "$WORK/rootfs.XXXXXX")
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
    || { echo "build_image: debootstrap failed; its log: $WORK/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$WORK/base.tar" .
  rm -rf "$rootfs"
  ctr=$(buildah from scratch)
  buildah add "$ctr" "$WORK/base.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd /bin/bash "$ctr"
  buildah commit --rm "$ctr" "$BASE" >/dev/null
  rm -f "$WORK/base.tar"
fi

# Behind a TLS-inspecting proxy the host's pip trusts an extra CA (PIP_CERT or pip's `cert` setting): lend it to
# the build's pip, mounted read-only for the RUN steps (the image keeps no copy).
cert=${PIP_CERT:-$(pip config get global.cert 2>/dev/null || true)}
ca_args=()
if [ -n "$cert" ] && [ -f "$cert" ]; then
  ca_args=(--volume "$cert:/run/build-ca.crt:ro" --build-arg PIP_CERT=/run/build-ca.crt)
  say "pip in the build trusts the host's CA bundle $cert (not copied into the image)"
fi
say "building $TAG from the Dockerfile on $BASE"
buildah build --isolation chroot --layers --build-arg BASE_IMAGE="$BASE" "${ca_args[@]}" -t "$TAG" .

say "checking $TAG: scripts/check_install.py, a 30-step training run and asr-transcribe inside the image"
ctr=$(buildah from "$TAG")
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah run --isolation chroot "$ctr" -- bash -euo pipefail -c '
  python scripts/check_install.py && echo "build_image: check_install.py passed in the image"
  asr-data synth --preset tiny --root data/synthetic_tiny > /tmp/synth.log 2>&1 || { tail -20 /tmp/synth.log; exit 1; }
  asr-train data=synthetic_tiny run_dir=/tmp/run trainer.max_steps=30 optim.total_steps=30 optim.warmup_steps=5 \
    trainer.precision=fp32 \
    > /tmp/train.log 2>&1 || { tail -20 /tmp/train.log; exit 1; }
  wav=$(find data/synthetic_tiny/test -name "*.flac" | sort | head -1)
  # 30 steps may not yet emit a word (an empty SRT is then right): the JSONL record shows the whole path ran.
  asr-transcribe checkpoint=/tmp/run audio="$wav" output=/tmp/out.srt && test -e /tmp/out.srt
  asr-transcribe checkpoint=/tmp/run audio="$wav" output=/tmp/out.jsonl
  grep -q "\"text\"" /tmp/out.jsonl && head -c 300 /tmp/out.jsonl && echo
'
say "ok: $TAG built and checked (elsewhere: buildah push $TAG docker-archive:asr.tar, then docker load -i asr.tar)"
