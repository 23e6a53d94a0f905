"""TensorBoard: every tag in one place (`split/metric`), plus the images a person wants to look at.

Only rank 0 holds a writer; other ranks get `None` and every function here accepts that.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

TRAIN_LOSS = "train/loss"
TRAIN_LR = "train/lr"
TRAIN_GRAD_NORM = "train/grad_norm"
TRAIN_SKIPPED = "train/skipped_steps"
TRAIN_ZEROED = "train/zeroed_utterances"
TRAIN_UTT_PER_S = "train/utterances_per_s"
TRAIN_AUDIO_PER_S = "train/audio_seconds_per_s"
TRAIN_PADDING = "train/padding_ratio"
TRAIN_DATA_WAIT = "train/data_wait_fraction"


def dev_tag(split: str, metric: str) -> str:
    """`dev-clean/wer_greedy`, `dev/loss`, ... (metrics: loss, wer_greedy, cer_greedy, blank_ratio)."""
    return f"{split}/{metric}"


# TensorBoard runs under <run dir>/tb/: the training's curves, and one run per evaluated checkpoint. Each has its
# own event files, so an evaluation written at an earlier step never makes TensorBoard drop the training's later
# points (it discards a run's points past a step that goes backwards), and the same tag (dev/wer_greedy) of both
# lands in one chart: the training's curve with the evaluation's dots at the checkpoint's step.
TRAIN_RUN = "train"


def eval_run(step: int) -> str:
    """The TensorBoard run of an `asr-eval` of the checkpoint at optimizer step `step`."""
    return f"eval-step-{step:08d}"


def open_writer(run_dir: str | Path, enabled: bool, run: str = TRAIN_RUN) -> Optional[SummaryWriter]:
    return SummaryWriter(log_dir=str(Path(run_dir) / "tb" / run)) if enabled else None


def hparams(writer: Optional[SummaryWriter], values: dict, metrics: dict[str, float]) -> None:
    """The run's hyper-parameters and final metrics in the HParams tab, inside the run itself (SummaryWriter's
    add_hparams would start a separate run beside it)."""
    if writer is None:
        return
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    exp, ssi, sei = hparams_summary(values, metrics)
    for summary in (exp, ssi, sei):
        writer.file_writer.add_summary(summary)
    for tag, value in metrics.items():
        writer.add_scalar(tag, value)


def scalars(writer: Optional[SummaryWriter], values: dict[str, float], step: int) -> None:
    if writer is None:
        return
    for tag, value in values.items():
        writer.add_scalar(tag, value, step)


MAX_POSTERIOR_ROWS = 48  # a posteriorgram of more classes (subword pieces) draws the likeliest ones


def likely_classes(post: np.ndarray, limit: int = MAX_POSTERIOR_ROWS) -> list[int]:
    """The classes worth a row in a picture of posteriors `post` (T', C): all of them when C <= limit, else the
    blank and the limit - 1 classes with the highest peak posterior, in vocabulary order (257 pieces would be 257
    mostly dark rows)."""
    C = post.shape[1]
    if C <= limit:
        return list(range(C))
    peaks = post[:, 1:].max(axis=0)
    return [0, *sorted(int(i) + 1 for i in np.argsort(-peaks, kind="stable")[: limit - 1])]


def _figure(feats: np.ndarray, post: np.ndarray, vocab: list[str], title: str):
    """Spectrogram (F x T) above the CTC posteriorgram (C x T'; at most MAX_POSTERIOR_ROWS likeliest classes), time
    on the x-axis of both."""
    rows = likely_classes(post)
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 6), constrained_layout=True)
    a.imshow(feats.T, origin="lower", aspect="auto", cmap="magma")
    a.set_title(f"{title}: log-mel spectrogram")
    a.set_ylabel("mel bin")
    b.imshow(post[:, rows].T, origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
             interpolation="nearest")
    b.set_yticks(range(len(rows)))
    b.set_yticklabels(["_" if vocab[i] == "<blank>" else ("|" if vocab[i] == " " else vocab[i]) for i in rows],
                      fontsize=6)
    shown = "" if len(rows) == len(vocab) else f"; the {len(rows)} likeliest of {len(vocab)} classes"
    b.set_title(f"CTC posteriors (blank = _, space = |{shown})")
    b.set_xlabel("output frame")
    return fig


def utterance_images(writer: Optional[SummaryWriter], tag: str, feats: torch.Tensor, log_probs: torch.Tensor,
                     vocab: list[str], step: int, title: str) -> None:
    """feats (T, F) and log_probs (T', C) of one utterance, valid frames only."""
    if writer is None:
        return
    fig = _figure(feats.float().cpu().numpy(), log_probs.float().exp().cpu().numpy(), vocab, title)
    writer.add_figure(tag, fig, step)
    plt.close(fig)


def text(writer: Optional[SummaryWriter], tag: str, rows: list[tuple[str, str, str]], step: int) -> None:
    """A markdown table of (id, reference, hypothesis)."""
    if writer is None:
        return
    md = "| id | reference | hypothesis |\n|---|---|---|\n" + "\n".join(
        f"| {i} | {r} | {h} |" for i, r, h in rows)
    writer.add_text(tag, md, step)
