# An image that runs both README commands: `bash scripts/demo.sh` (the main job) and `bash scripts/test.sh`.
# For GPU training, run with `docker run --gpus all ...`: PyPI's torch 2.11 wheels bundle the CUDA runtime.
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng flite wordnet-base libsndfile1 git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY asr ./asr
RUN python -m venv .venv && .venv/bin/pip install --upgrade pip && .venv/bin/pip install -e ".[dev]" \
 && sha256sum pyproject.toml | cut -d' ' -f1 > .venv/.asr-installed
COPY . .
ENV PATH=/app/.venv/bin:$PATH
CMD ["bash", "scripts/demo.sh"]
