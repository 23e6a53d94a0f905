"""Validation during training: dev loss, greedy WER/CER and blank ratio per dev set (summed over ranks), sample
transcripts and spectrogram/posteriorgram images in TensorBoard, and the checkpoint that records the result.

Shapes: B batch, T' frames after subsampling, C classes.
"""
from __future__ import annotations

import logging
from dataclasses import astuple, dataclass
from typing import Iterator, Optional

import torch
from tqdm import tqdm

from asr import tb
from asr.data.dataset import AudioDataset, Batch
from asr.decoding.greedy import greedy_decode
from asr.lengths import lengths_to_mask
from asr.metrics import score
from asr.model.ctc import compute_loss
from asr.model.forward import forward
from asr.train import distributed as dist_utils
from asr.train import resume
from asr.train.components import Components
from asr.train.state import Budget, TrainState

log = logging.getLogger("asr.train")


@dataclass
class DevTotals:
    """Sums over one dev set (this rank's share until `reduced`)."""

    loss: float = 0.0  # sum of per-utterance CTC losses
    utterances: float = 0.0
    blank_frames: float = 0.0  # valid output frames whose best class is the blank
    frames: float = 0.0  # valid output frames
    word_errors: float = 0.0
    ref_words: float = 0.0
    char_errors: float = 0.0
    ref_chars: float = 0.0

    def reduced(self, device: torch.device) -> "DevTotals":
        """The sums over all ranks (a collective: every rank calls it)."""
        summed = dist_utils.all_reduce_sum(torch.tensor(astuple(self), dtype=torch.float64, device=device))
        return DevTotals(*(float(x) for x in summed.cpu()))

    def metrics(self) -> dict[str, float]:
        """The figures logged per dev set (TensorBoard tags `split/<name>`, asr/tb.py)."""
        return {"loss": self.loss / max(self.utterances, 1), "blank_ratio": self.blank_frames / max(self.frames, 1),
                "wer_greedy": self.word_errors / max(self.ref_words, 1),
                "cer_greedy": self.char_errors / max(self.ref_chars, 1)}


@torch.no_grad()
def evaluate_loss_batches(run: Components, dataset: AudioDataset, batches: list[list[int]],
                          desc: str) -> Iterator[tuple[Batch, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Run the model over fixed dev batches: yields (batch, log_probs (B,T',C), out_lengths (B,), losses (B,))."""
    for idx in tqdm(batches, desc=desc, leave=False, disable=not (run.cfg.trainer.progress and run.dist.is_main)):
        batch = dataset[idx]
        if len(batch) == 0:
            continue
        batch = batch.to(run.device)
        objective = compute_loss(run.featurizer, run.raw_model, batch.waves, batch.wave_lengths, batch.targets,
                                 batch.target_lengths, inter_ctc_weight=run.cfg.model.inter_ctc_weight,
                                 precision=run.amp_dtype)
        out = objective.output
        yield batch, out.log_probs, out.out_lengths, objective.losses


@torch.no_grad()
def validate(run: Components, state: TrainState, writer) -> dict[str, dict[str, float]]:
    """Dev loss, greedy WER/CER and blank ratio per dev set (reduced across ranks); images for a few utterances."""
    run.model.eval()
    results: dict[str, dict[str, float]] = {}
    for split, (dataset, batches) in run.dev_sets.items():
        ids, refs, hyps = [], [], []
        totals = DevTotals()
        for batch, log_probs, out_lengths, losses in evaluate_loss_batches(run, dataset, batches, f"validate {split}"):
            hyps += greedy_decode(log_probs, out_lengths, run.tokenizer)
            ids += batch.ids
            refs += batch.texts
            mask = lengths_to_mask(out_lengths, log_probs.shape[1])  # (B, T')
            totals.loss += float(losses.sum())
            totals.utterances += len(batch)
            totals.blank_frames += float(((log_probs.argmax(-1) == 0) & mask).sum())
            totals.frames += float(mask.sum())
        word, char, _ = score(ids, refs, hyps)
        totals.word_errors, totals.ref_words = word.errors, word.ref_units
        totals.char_errors, totals.ref_chars = char.errors, char.ref_units
        results[split] = totals.reduced(run.device).metrics()
        tb.scalars(writer, {tb.dev_tag(split, k): v for k, v in results[split].items()}, state.step)
        if writer is not None:
            tb.text(writer, f"{split}/samples", list(zip(ids, refs, hyps))[: 8], state.step)
            _images(run, split, dataset, writer, state.step)
    return results


def _images(run: Components, split: str, dataset, writer, step: int) -> None:
    """Spectrogram + posteriorgram of the first few dev utterances, the same ones at every validation."""
    n = min(run.cfg.trainer.num_images, len(dataset.utts))
    if n == 0:
        return
    batch = dataset[list(range(n))].to(run.device)
    out = forward(run.featurizer, run.raw_model, batch.waves, batch.wave_lengths, precision=run.amp_dtype)
    for i, uid in enumerate(batch.ids):
        tb.utterance_images(writer, f"{split}/posteriorgram_{i}", out.feats[i, : out.frames[i]],
                            out.log_probs[i, : out.out_lengths[i]], run.tokenizer.vocab, step, uid)


def validate_and_save(run: Components, state: TrainState, writer,
                      budget: Optional[Budget] = None) -> dict[str, dict[str, float]]:
    """Validate, record the result in the history, checkpoint (and best.pt when the mean dev WER improved).
    A step already validated (a step-based validation that fell on an epoch end or the last step) is only
    checkpointed again, so the history holds each step once. `budget` is ticked before the checkpoint, so the
    time validation took is part of the elapsed time a resumed run carries on from."""
    if state.history and state.history[-1]["step"] == state.step:
        resume.save(run, state)
        return {k: v for k, v in state.history[-1].items() if isinstance(v, dict)}
    results = validate(run, state, writer)
    if budget is not None:
        budget.tick(state)
    mean_wer = sum(r["wer_greedy"] for r in results.values()) / max(len(results), 1)
    state.history.append({"step": state.step, "epoch": state.epoch, "elapsed_s": round(state.elapsed_s, 1),
                          **results})
    improved = mean_wer < state.best_wer
    if improved:
        state.best_wer = mean_wer
    if run.dist.is_main:
        best = ("new best, saved as best.pt" if improved else
                f"best so far {100 * state.best_wer:.2f}% (best.pt)")
        clock = (f"; {state.elapsed_s / 60:.1f} of {budget.seconds / 60:.1f} min used"
                 if budget is not None and budget.seconds else "")
        log.info("step %d epoch %d: %s (greedy; %s)%s", state.step, state.epoch, "; ".join(
            f"{s}: loss {r['loss']:.3f} WER {100 * r['wer_greedy']:.2f}% CER {100 * r['cer_greedy']:.2f}%"
            for s, r in results.items()), best, clock)
    resume.save(run, state, best=improved)
    return results
