"""A picture of what the model heard: the CTC posteriors (T', C) as a PNG, vocabulary on the y axis and time in
seconds on the x axis, returned as a data URL the web page can show as is.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display). Matplotlib is not thread-safe
(its docs say so: fonts, caches and the text layout are shared), and requests are served by several threads, so
one drawing runs at a time.
"""
from __future__ import annotations

import base64
import io
import threading

import torch

from asr.text import Tokenizer

_LOCK = threading.Lock()
_NAMES = {" ": "space", "'": "' (apostrophe)"}  # tokens that read as nothing on an axis
DPI = 100
MAX_WIDTH_IN = 24.0  # a 2-minute file still fits one readable picture


def token_labels(tokenizer: Tokenizer) -> list[str]:
    """y-axis labels, one per class: the blank and the space spelled out."""
    return ["blank" if i == tokenizer.blank else _NAMES.get(tok, tok) for i, tok in enumerate(tokenizer.vocab)]


def posteriorgram_png(log_probs: torch.Tensor, tokenizer: Tokenizer, frame_seconds: float) -> bytes:
    """log_probs (T', C) -> PNG bytes of exp(log_probs): one row per class (blank at the top; at most
    asr.tb.MAX_POSTERIOR_ROWS, the likeliest), one column per frame."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from asr.tb import likely_classes  # the training curves' rule for which rows a picture of posteriors draws

    post = log_probs.detach().float().exp().cpu().numpy()  # (T', C)
    rows = likely_classes(post)
    probs = post[:, rows].T  # (rows, T')
    C, T = probs.shape
    seconds = T * frame_seconds
    width = min(MAX_WIDTH_IN, max(6.0, 1.8 + 0.05 * T))
    with _LOCK:
        fig = Figure(figsize=(width, 0.12 * C + 1.0), dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        im = ax.imshow(probs, aspect="auto", interpolation="antialiased", origin="upper", cmap="magma", vmin=0.0,
                       vmax=1.0, extent=(0.0, seconds, C - 0.5, -0.5))
        labels = token_labels(tokenizer)
        ax.set_yticks(range(C), [labels[i] for i in rows], fontsize=7)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("token" if C == len(labels) else f"token (the {C} likeliest of {len(labels)})")
        fig.colorbar(im, ax=ax, pad=0.01, fraction=0.03, label="posterior")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
