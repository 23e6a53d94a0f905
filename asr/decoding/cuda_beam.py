"""LM-free CTC prefix beam search on the GPU: torchaudio's `cuda_ctc_decoder` (CUCTC).

Shapes: B batch, T' frames after subsampling, C vocabulary including the blank (id 0).

What torchaudio's CUCTC asks for (torchaudio/models/decoder/_cuda_ctc_decoder.py): the blank must be id 0 (ours is);
log-probs (a log_softmax, not logits) as a contiguous fp32 CUDA tensor (B, T', C) with int32 CUDA lengths; it caps
the beam at the vocabulary size (C = 29 here), skips frames whose blank probability exceeds `blank_skip_threshold`,
and returns label ids with blanks removed and repeats collapsed. It has no LM; use `BeamSearchDecoder` for one.

Caution: torchaudio 2.11's CUCTC kernel places its top-k values past the end of its shared memory
(`block_topk_key + sizeof(float) * beam` on a float pointer; pytorch/audio#4181, #3754, unmerged fixes #4198/#4199).
The overrun grows with the beam. Seen here on an H200 (torchaudio 2.11.0+cu130): beams 1, 2 and 4 ran, beam 10 aborted
the whole process ("cudaErrorIllegalAddress", then "Fatal Python error: Aborted"); the fix's authors report the
fault as systematic on Hopper/Blackwell and beam-dependent on older GPUs. A run that does not fault still writes
out of bounds, and an abort cannot be caught, so the decoder refuses to build on compute capability >= 9.0.
"""
from __future__ import annotations

import torch

from asr.errors import UserError
from asr.text import CharTokenizer

_FIRST_BROKEN_CAPABILITY = (9, 0)  # Hopper: see the module docstring


def torchaudio_version() -> str:
    import torchaudio

    return torchaudio.__version__.split("+")[0]


class CudaBeamDecoder:
    """Batched CTC prefix beam search on the GPU, built once and reused; `decode` mirrors BeamSearchDecoder's.

    Used by the tests and benchmarks only: `asr-eval` and `asr-transcribe` decode on the CPU (flashlight), since
    torchaudio's CUDA decoder aborts on Hopper GPUs (see tests/decoding/test_cuda_beam.py)."""

    def __init__(self, tokenizer: CharTokenizer, beam_size: int = 10, nbest: int = 1,
                 blank_skip_threshold: float = 0.95) -> None:
        if not torch.cuda.is_available():
            raise UserError("the CUDA beam decoder needs CUDA, which is not available here; use the CPU beam "
                            "decoder (BeamSearchDecoder)")
        if tokenizer.blank != 0:
            raise UserError(f"the CUDA beam decoder needs the blank at id 0, the tokenizer has it at {tokenizer.blank}")
        if not 0.0 <= blank_skip_threshold <= 1.0:
            raise UserError(f"blank_skip_threshold must be in [0, 1], got {blank_skip_threshold}")
        capability = torch.cuda.get_device_capability()
        if capability >= _FIRST_BROKEN_CAPABILITY:
            raise UserError(f"the CUDA beam decoder (torchaudio {torchaudio_version()} CUCTC) aborts the process on "
                            f"compute capability {capability[0]}.{capability[1]} GPUs (Hopper and newer: "
                            "pytorch/audio#3754); use the CPU beam decoder (BeamSearchDecoder)")
        from torchaudio.models.decoder import cuda_ctc_decoder  # loads torchaudio's CUDA extension

        self.tokenizer = tokenizer
        self.beam_size = min(beam_size, tokenizer.size)  # what CUCTC will use (it caps the beam at C)
        # The token names only label CUCTC's per-token "words"; we map ids to text ourselves.
        names = ["<blank>" if i == 0 else ("|" if t == " " else t) for i, t in enumerate(tokenizer.vocab)]
        self._decoder = cuda_ctc_decoder(names, nbest=nbest, beam_size=beam_size,
                                         blank_skip_threshold=blank_skip_threshold)
        self.device = torch.device("cuda", torch.cuda.current_device())

    def decode_ids(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[tuple[list[int], float]]]:
        """(B, T', C) log-probs + (B,) lengths -> per utterance the n-best (label ids, score), best first."""
        if log_probs.dim() != 3 or log_probs.shape[2] != self.tokenizer.size:
            raise ValueError(f"expected log_probs (B, T', {self.tokenizer.size}), got {tuple(log_probs.shape)}")
        x = log_probs.detach().to(self.device, torch.float32).contiguous()
        lens = lengths.detach().to(self.device, torch.int32).clamp(0, x.shape[1]).contiguous()
        hyps = self._decoder(x, lens)
        return [[([int(i) for i in h.tokens], float(h.score)) for h in nbest] for nbest in hyps]

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """(B, T', C) log-probs + (B,) lengths -> B best transcripts."""
        return [self.tokenizer.ids_to_text(nbest[0][0]) if nbest else "" for nbest in self.decode_ids(log_probs,
                                                                                                         lengths)]

    __call__ = decode
