"""CTC decoders: greedy (best path), beam search with optional word LM (flashlight via torchaudio), a GPU beam
search (torchaudio CUCTC), and a small reference prefix beam search + brute-force oracle used by the tests.

`beam` and `cuda_beam` are imported lazily by their users: they load flashlight-text / torchaudio's CUDA extension.
"""
from asr.decoding.greedy import greedy_decode, greedy_ids, word_spans
from asr.decoding.reference import exhaustive_search, prefix_beam_search

__all__ = ["greedy_decode", "greedy_ids", "word_spans", "prefix_beam_search", "exhaustive_search",
           "BeamSearchDecoder", "BeamHypothesis", "write_lexicon", "CudaBeamDecoder"]


def __getattr__(name: str):
    # `from asr.decoding import BeamSearchDecoder` works without importing flashlight for greedy-only users.
    if name in ("BeamSearchDecoder", "BeamHypothesis", "write_lexicon"):
        from asr.decoding import beam

        return getattr(beam, name)
    if name == "CudaBeamDecoder":
        from asr.decoding.cuda_beam import CudaBeamDecoder

        return CudaBeamDecoder
    raise AttributeError(f"module 'asr.decoding' has no attribute {name!r}")
