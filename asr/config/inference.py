"""Inference schemas: `asr-eval` and `asr-transcribe` share a base (the checkpoint, its device, the beam search),
as deepspeech.pytorch's InferenceConfig does; each adds its own fields. configs/eval.yaml and
configs/transcribe.yaml extend these."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from asr.config.base import Choice, check


class Decoder(Choice):
    greedy = "greedy"  # best path
    beam = "beam"  # flashlight beam search, no LM
    beam_lm = "beam_lm"  # beam search with a word n-gram LM (beam.lm_path)


DECODERS = tuple(d.value for d in Decoder)


def default_decoders(lm_path: Optional[str]) -> list[Decoder]:
    """greedy and beam, and beam_lm when there is an LM (asr-eval's and asr-serve's default `decoders`)."""
    return [Decoder.greedy, Decoder.beam] + ([Decoder.beam_lm] if lm_path else [])


class Backend(Choice):
    pytorch = "pytorch"  # the checkpoint itself
    onnx = "onnx"  # an `asr-export format=onnx` model, run by onnxruntime
    torchscript = "torchscript"  # an `asr-export format=torchscript` model, run by torch.jit

# asr-eval's corpora: name -> (manifest folder under data_dir, default subsets)
DATASETS = {"synthetic": ("synthetic/manifests", ["dev", "test"]),
            "librispeech": ("LibriSpeech/manifests", ["dev-clean", "dev-other", "test-clean", "test-other"])}


@dataclass
class BeamConfig:
    beam_size: int = 50  # hypotheses kept after each frame
    beam_size_token: Optional[int] = None  # tokens considered per frame; null = the whole vocabulary
    beam_threshold: float = 50.0  # drop hypotheses scoring this much below the best (log units)
    lm_path: Optional[str] = None  # word n-gram LM (ARPA or KenLM binary) for the beam_lm decoder; null = none
    lexicon_path: Optional[str] = None  # beam_lm's "WORD<tab>W O R D |" lexicon; null = the LM's unigrams
    # beam_lm's weights; null = the ones `asr-eval tune_lm=true` recorded with the model for this LM, else 0.5 / 0
    lm_weight: Optional[float] = None  # weight of the LM's log10 probabilities
    word_score: Optional[float] = None  # score added per word; raise it when words go missing
    workers: int = 1  # processes for beam / beam_lm decoding (each loads its own LM); 0 = every core

    def validate(self, prefix: str, decoders: list[str], lm_may_come_with_model: bool = False) -> None:
        """Cross-field rules; `prefix` is where this group sits in the caller's config (e.g. "beam").
        lm_may_come_with_model: beam_lm without lm_path is checked after the model's recorded settings are read
        (asr.decoding.settings.require_lm)."""
        from asr.decoding.arpa import check_lm_files  # the one existence check of LM files (also the decoder's)

        check(self.beam_size >= 1, f"{prefix}.beam_size", f"must be >= 1, got {self.beam_size}")
        check(self.workers >= 0, f"{prefix}.workers", f"must be >= 0 (0 = every core), got {self.workers}")
        check(self.beam_size_token is None or self.beam_size_token >= 1, f"{prefix}.beam_size_token",
              f"must be >= 1 or null, got {self.beam_size_token}")
        check(self.beam_threshold > 0, f"{prefix}.beam_threshold", f"must be > 0, got {self.beam_threshold}")
        if Decoder.beam_lm in decoders and not lm_may_come_with_model:
            check(bool(self.lm_path), f"{prefix}.lm_path", f"the beam_lm decoder needs a language model; set "
                  f"{prefix}.lm_path=PATH (build one with `asr-data lm`) or drop beam_lm")
        check_lm_files(self.lm_path if Decoder.beam_lm in decoders else None, self.lexicon_path or None, prefix)


@dataclass
class InferenceConfig:
    """What every inference command needs: a model (a checkpoint, or an exported model), where to run it, and
    how to beam-search."""

    checkpoint: Optional[str] = None  # a checkpoint .pt, or a run dir (its checkpoints/best.pt)
    average_last: int = 1  # N > 1: average the weights of the newest N rolling checkpoints beside the checkpoint
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N" (backend=pytorch; exported models run on the CPU)
    beam: BeamConfig = field(default_factory=BeamConfig)  # beam search and LM settings (beam, beam_lm)
    # pytorch, onnx or torchscript; null = onnx/torchscript when `exported` is given (by its suffix), else pytorch
    backend: Optional[Backend] = None
    # An exported model file (asr-export); null with backend=onnx: <run>/export/model.onnx. (Not `model`: Hydra
    # reads `model=X` as choosing a configs/model/ preset.)
    exported: Optional[str] = None

    def __post_init__(self) -> None:
        if self.backend is None:
            self.backend = (Backend.pytorch if not self.exported else
                            Backend.onnx if str(self.exported).endswith(".onnx") else Backend.torchscript)
        self.backend = Backend.parse(self.backend, "backend")
        if self.backend == Backend.pytorch:
            check(bool(self.checkpoint), "checkpoint",
                  "required; pass checkpoint=PATH (a .pt file or a training run dir), or exported=PATH of an exported "
                  "model")
            check(not self.exported, "exported", f"{self.exported} is an exported model and backend=pytorch runs "
                  "checkpoints; drop backend=pytorch (or set backend=onnx / torchscript)")
        else:
            check(bool(self.checkpoint or self.exported), "exported",
                  f"backend={self.backend} needs exported=PATH of an exported model (asr-export), or checkpoint=RUN "
                  "with one in RUN/export/")
            check(self.average_last == 1, "average_last", "averaging needs checkpoints; export the average instead "
                  "(asr-export average_last=N)")
        check(self.average_last >= 1, "average_last", f"must be >= 1, got {self.average_last}")


@dataclass
class EvalConfig(InferenceConfig):
    # Not `data`: configs/data/ is the training presets' config group, and Hydra reads `data=X` as choosing one.
    corpus: Optional[str] = "synthetic"  # "synthetic", "librispeech" or null (then only `manifests`)
    data_dir: str = "data"  # the folder holding synthetic/manifests/ and LibriSpeech/manifests/
    subsets: Optional[list[str]] = None  # subsets of `corpus`; null = dev, test (synthetic) or LibriSpeech dev/test
    # Extra sets, named by the user (so new keys are allowed here): name -> JSONL (CLI: +manifests.NAME=PATH).
    manifests: dict[str, str] = field(default_factory=dict)
    max_utterances: Optional[int] = None  # evaluate only the first N utterances of each set (quick looks)
    decoders: Optional[list[Decoder]] = None  # greedy, beam, beam_lm; null = greedy, beam (+ beam_lm with an LM)
    tune_lm: bool = False  # grid-search beam.lm_weight x beam.word_score on tune_subset, then use the best pair
    tune_subset: Optional[str] = None  # set to tune on; null = the first set whose name starts with "dev"
    lm_weight_grid: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 1.5, 2.0])  # tune_lm's LM weights
    word_score_grid: list[float] = field(default_factory=lambda: [-1.0, 0.0, 1.0, 2.0])  # tune_lm's word scores
    batch_seconds: float = 300.0  # padded audio seconds per acoustic-model batch
    worst_n: int = 5  # print this many worst utterances and most frequent word errors per set (0 = none)
    out_dir: Optional[str] = None  # null = <run dir>/eval (or <checkpoint folder>/eval outside a run dir)
    tb: bool = True  # write <set>/wer_<decoder> and <set>/cer_<decoder> to the run's TensorBoard log
    progress: bool = True  # progress bars on stderr

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.backend == Backend.pytorch, "backend", "asr-eval scores checkpoints (backend=pytorch); to check an "
              "exported model, `asr-export` measures its parity and `asr-transcribe backend=onnx` runs it")
        check(self.corpus is None or self.corpus in DATASETS, "corpus",
              f"{self.corpus!r} is not a known corpus; use {' or '.join(DATASETS)} or null")
        check(self.corpus is not None or not self.subsets, "subsets",
              "need a corpus; set corpus=synthetic or corpus=librispeech, or use manifests")
        check(self.max_utterances is None or self.max_utterances >= 1, "max_utterances",
              f"must be >= 1 or null, got {self.max_utterances}")
        if self.decoders is None:
            self.decoders = default_decoders(self.beam.lm_path)
        self.decoders = [Decoder.parse(d, "decoders") for d in self.decoders]
        check(bool(self.decoders) and len(set(self.decoders)) == len(self.decoders), "decoders",
              f"{[str(d) for d in self.decoders]} must be distinct names from {Decoder.names()}")
        if self.tune_lm:
            check(bool(self.beam.lm_path), "beam.lm_path", "tune_lm=true needs a language model; set beam.lm_path=PATH")
            check(bool(self.lm_weight_grid and self.word_score_grid), "lm_weight_grid/word_score_grid",
                  "tune_lm=true needs at least one value in each")
            if Decoder.beam_lm not in self.decoders:
                self.decoders.append(Decoder.beam_lm)  # the tuned pair is only used by beam_lm
        self.beam.validate("beam", self.decoders, lm_may_come_with_model=not self.tune_lm)
        check(self.batch_seconds > 0, "batch_seconds", f"must be > 0, got {self.batch_seconds}")
        check(self.worst_n >= 0, "worst_n", f"must be >= 0, got {self.worst_n}")


@dataclass
class TranscribeConfig(InferenceConfig):
    # Files, folders (searched recursively), globs, .jsonl manifests, or "-" (a list on stdin): audio=[a.flac,talks/]
    audio: list[str] = field(default_factory=list)
    decoder: Decoder = Decoder.greedy  # greedy, beam or beam_lm (the LM recorded with the model, or beam.lm_path)
    batch_seconds: float = 120.0  # padded audio seconds the model runs at once (files are batched by duration)
    chunk_seconds: float = 30.0  # window the model runs on at a time (long files); bounds its memory
    context_seconds: float = 2.0  # extra audio on each side of a window, run but not kept
    output: Optional[str] = None  # file to write; null = stdout (JSONL)
    output_format: Optional[str] = None  # jsonl, csv, srt, vtt or ctm; null = by output's suffix (else jsonl)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.decoder = Decoder.parse(self.decoder, "decoder")
        check(bool(self.audio), "audio", "no files given; pass audio=[file1.flac,file2.wav], a folder, or - (stdin)")
        self.beam.validate("beam", [self.decoder], lm_may_come_with_model=True)
        check(self.batch_seconds > 0, "batch_seconds", f"must be > 0, got {self.batch_seconds}")
        check(self.chunk_seconds > 0, "chunk_seconds", f"must be > 0, got {self.chunk_seconds}")
        check(self.context_seconds >= 0, "context_seconds", f"must be >= 0, got {self.context_seconds}")
