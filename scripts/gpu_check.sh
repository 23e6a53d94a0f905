#!/usr/bin/env bash
# The GPU checks, as one short script for a lent GPU machine (<= 8 minutes; see docs/BENCHMARKS.md for the figures):
# the real pipeline end to end (a LibriSpeech-like FLAC corpus generated on all cores, `asr-train` large fp16 with
# 1200-s batches) beside the step alone on generated batches of the same size; training throughput of the large
# model in fp32/fp16/bf16 at 32 x 15 s, the small model for scale, a real `asr-train` run on CUDA with fp16 on the
# tiny corpus, and the CUDA-only tests. Nothing is fetched from the network.
# Expects the project's Python dependencies importable (PYTHONPATH) and data/synthetic_tiny generated.
set -uo pipefail
OUT="${OUT:-/tmp/gpu_check}"; mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 scripts/bench.py --only pipeline --pipeline-hours 4 --pipeline-steps 80 --pipeline-batch-seconds 1200 \
  --out "$OUT/pipeline"
python3 scripts/bench_gpu_train.py --model large --steps 40 --batch 80 --seconds 15 --precisions fp16 --out "$OUT/bench.jsonl"
python3 scripts/bench_gpu_train.py --model large --steps 60 --batch 32 --seconds 15 --precisions fp32,fp16 --out "$OUT/bench.jsonl"
python3 scripts/bench_gpu_train.py --model large --steps 50 --batch 32 --seconds 15 --precisions bf16 --out "$OUT/bench.jsonl"
python3 scripts/bench_gpu_train.py --model small --steps 50 --batch 64 --seconds 15 --precisions fp32,fp16 --out "$OUT/bench.jsonl"
m=data/synthetic_tiny/manifests
python3 -m asr.train.loop data=synthetic_tiny data.synth_preset=null "data.train_manifests=[$m/train.jsonl]" \
  "data.dev_manifests={dev:$m/dev.jsonl}" trainer.device=cuda trainer.precision=fp16 trainer.max_steps=60 \
  trainer.progress=false run_dir="$OUT/run_fp16" 2>&1 | grep -vE "synthesizing|^\s*$" | tail -8
python3 -m pytest -q -p no:cacheprovider tests/model/test_features.py tests/model/test_model.py tests/inference/test_evaluate.py \
  tests/decoding -k "cuda or gpu" 2>&1 | tail -4
