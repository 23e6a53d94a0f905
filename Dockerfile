# An image that runs both README commands: `bash scripts/demo.sh` (the main job) and `bash scripts/test.sh`.
# For GPU training, run with `docker run --gpus all ...`: PyPI's torch 2.11 wheels bundle the CUDA runtime.
# Python packages come from requirements.lock alone (exact versions, hash-checked), as in scripts/setup.sh.
# BASE_IMAGE: any Debian bookworm with Python 3.11 as `python`; scripts/build_image.sh builds one from the Debian
# mirror (debootstrap) where Docker Hub cannot be reached, and builds and checks this image on it with buildah.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# PIP_CERT: a CA bundle for pip during the build only, behind a TLS-inspecting proxy (scripts/build_image.sh mounts
# the host's and passes its path; unset by default, and no certificate is stored in the image).
ARG PIP_CERT
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng flite wordnet-base libsndfile1 git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.lock ./
RUN python -m venv .venv && .venv/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY . .
# The same stamp as setup.sh writes, so `bash scripts/*.sh` in the container does not reinstall.
RUN .venv/bin/pip install --no-deps --no-build-isolation -e . \
 && cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1 > .venv/.asr-installed \
 && .venv/bin/python scripts/check_install.py
ENV PATH=/app/.venv/bin:$PATH
# asr-serve listens on loopback by default; inside a container publish it with
#   docker run -p 8000:8000 -v $PWD/runs:/app/runs IMAGE asr-serve checkpoint=runs/RUN host=0.0.0.0
EXPOSE 8000
CMD ["bash", "scripts/demo.sh"]
