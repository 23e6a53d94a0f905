"""CTC decoders: greedy (best path) and beam search with an optional word LM (flashlight via torchaudio).

`beam` is imported lazily by its users: it loads flashlight-text. The reference prefix beam search and the
brute-force oracle (`asr.decoding.reference`, pure Python) serve the tests and the decoding benchmark; they are
imported only where used.
"""
from asr.decoding.greedy import greedy_decode, greedy_ids

__all__ = ["greedy_decode", "greedy_ids", "BeamSearchDecoder", "BeamHypothesis", "write_lexicon"]


def __getattr__(name: str):
    # `from asr.decoding import BeamSearchDecoder` works without importing flashlight for greedy-only users.
    if name in ("BeamSearchDecoder", "BeamHypothesis", "write_lexicon"):
        from asr.decoding import beam

        return getattr(beam, name)
    raise AttributeError(f"module 'asr.decoding' has no attribute {name!r}")
