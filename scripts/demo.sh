#!/usr/bin/env bash
# The main job, from a fresh machine, in at most 20 minutes on 2 CPU cores:
# built-in corpus -> doctor -> train (time-budgeted) -> 3-gram LM from training text -> WER table on test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# Logged to a file or a CI console, redraw progress bars every 30 s instead of many times a second.
[ -t 2 ] || export TQDM_MININTERVAL="${TQDM_MININTERVAL:-30}"
TRAIN_MINUTES="${TRAIN_MINUTES:-14}"
# bf16 autocast ran the LSTMs ~1.3x faster here (a CPU with AVX512-BF16/AMX); without native bf16, stay in fp32.
# PRECISION=fp32|bf16 in the environment decides instead (scripts/bench_accuracy.py gives the peer the same).
if [ -z "${PRECISION:-}" ]; then
  PRECISION=fp32
  grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null && PRECISION=bf16
fi
RUN="${RUN:-runs/demo}"
SEED="${SEED:-1}"  # model init, batch order and augmentation (scripts/bench_accuracy.py runs several)
start=$(date +%s)

echo "== 1/5 built-in corpus"
asr-data synth --preset demo --root data/synthetic

echo "== 2/5 doctor"
# Exit 1 means findings were reported (the trainer drops what it cannot use); 2 means unusable input.
asr-data doctor data/synthetic/manifests/{train,dev,test}.jsonl --subsampling 2 \
  --plot "data/synthetic/durations.png" || [ $? -eq 1 ]

echo "== 3/5 train (budget ${TRAIN_MINUTES} min, $PRECISION)"
asr-train run_dir="$RUN" trainer.max_minutes="$TRAIN_MINUTES" trainer.precision="$PRECISION" trainer.seed="$SEED" \
  trainer.val_every_epochs=2

echo "== 4/5 language model (training transcripts only)"
mkdir -p data/lm
asr-data lm build --text data/synthetic/lm_text.txt --order 3 --out data/lm/synthetic_train_3gram.arpa

echo "== 5/5 evaluate on dev and test (LM weights tuned on dev only)"
asr-eval checkpoint="$RUN" corpus=synthetic subsets=[dev,test] decoders=[greedy,beam,beam_lm] \
  beam.lm_path=data/lm/synthetic_train_3gram.arpa tune_lm=true tune_subset=dev worst_n=3
echo "demo finished in $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s. Next (the LM and its tuned weights travel with the model):"
echo "  asr-transcribe checkpoint=$RUN audio=data/synthetic/test decoder=beam_lm output=test.srt   # subtitles per file"
echo "  asr-serve checkpoint=$RUN            # a web page to upload or record audio: http://127.0.0.1:8000"
echo "  python -c 'import asr; print(asr.load(\"$RUN\").transcribe(\"YOUR.wav\").text)'"
echo "  tensorboard --logdir $RUN/tb"
