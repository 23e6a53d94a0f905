"""Inference pieces shared by `asr-eval` and `asr-transcribe`: load a checkpoint, run the acoustic model, decode.

A checkpoint describes itself (DESIGN.md, "Checkpoints describe themselves"): the model, features and vocabulary
are rebuilt from what it holds, so `checkpoint=PATH` is all either tool needs.

Shapes: B batch, S samples, T frames, T' frames after subsampling, C vocabulary incl. blank.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from asr import checkpoint as ckpt_io
from asr.audio import AudioLoadError, load_audio
from asr.config import (
    DECODERS,
    Backend,
    BeamConfig,
    ConfigError,
    FeatureConfig,
    InferenceConfig,
    TrainConfig,
    to_object,
)
from asr.data.manifest import Utterance
from asr.data.sampler import DurationBucketSampler
from asr.decoding import settings
from asr.decoding.arpa import check_lm_files
from asr.decoding.greedy import greedy_decode
from asr.decoding.parallel import ParallelBeamDecoder, resolve_workers
from asr.decoding.settings import DEFAULT_LM_WEIGHT, DEFAULT_WORD_SCORE
from asr.device import pick_device
from asr.errors import message_line
from asr.inference.transcription import DecodeFn, Engine
from asr.lengths import pad_waves
from asr.model.acoustic import AcousticModel
from asr.model.features import LogMel
from asr.model.forward import forward
from asr.text import Tokenizer, tokenizer_from_dict

log = logging.getLogger(__name__)




@dataclass
class LoadedModel:
    """A checkpoint made ready for inference: eval-mode model and front-end on `device`."""

    model: AcousticModel
    featurizer: LogMel
    tokenizer: Tokenizer
    config: TrainConfig
    device: torch.device
    path: Path  # the checkpoint file that gave config, vocabulary and features
    step: int  # optimizer step of the weights (the newest averaged checkpoint's when averaging)
    run_dir: Optional[Path]  # the training run dir when the checkpoint lies in <run>/checkpoints/
    averaged: list[Path] = field(default_factory=list)  # checkpoints whose weights were averaged (empty: none)

    @property
    def sample_rate(self) -> int:
        return self.config.features.sample_rate

    @property
    def samples_per_frame(self) -> int:
        """Samples per output frame: hop_length x time subsampling."""
        return self.config.features.hop_length * self.model.subsampling

    @property
    def frame_seconds(self) -> float:
        return self.samples_per_frame / self.sample_rate

    def output_frames(self, num_samples: int) -> int:
        """T' the model gives for num_samples samples."""
        return int(self.model.output_lengths(self.featurizer.output_lengths(torch.tensor([num_samples])))[0])

    def describe(self) -> str:
        return f"{self.model.describe()} (checkpoint {self.path}, step {self.step})"

    @torch.no_grad()
    def log_probs(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(waves (B, S), lengths (B,)) on any device -> (log_probs (B, T', C) fp32, out_lengths (B,)) on `device`."""
        out = forward(self.featurizer, self.model, waves.to(self.device), lengths.to(self.device))
        return out.log_probs, out.out_lengths


def resolve_checkpoint(path: str | Path) -> Path:
    """A .pt file as is; a run dir -> run/checkpoints/best.pt; a checkpoints folder -> its best.pt."""
    p = Path(path)
    if p.is_dir():
        for cand in (p / "checkpoints" / "best.pt", p / "best.pt"):
            if cand.is_file():
                return cand
        raise ckpt_io.CheckpointError(f"{p} is a folder without checkpoints/best.pt; pass checkpoint=PATH/TO/FILE.pt "
                                      f"or the run dir of a finished training run")
    if not p.is_file():
        raise ckpt_io.CheckpointError(f"checkpoint not found: {p}; pass checkpoint=PATH to a .pt file or a run dir")
    return p


def load_model(path_or_run_dir: str | Path, device: str | torch.device = "cpu", average_last: int = 1,
               key: str = "checkpoint") -> LoadedModel:
    """Rebuild the model, front-end and tokenizer a checkpoint describes, ready for inference on `device`.

    average_last: N > 1 averages the weights of the newest N rolling checkpoints (step-*.pt) in the checkpoint's
    folder -- usually better than any single one late in training; the configuration comes from the given one.
    """
    path = resolve_checkpoint(path_or_run_dir)
    dev = device if isinstance(device, torch.device) else pick_device(device, key="device")
    blob = ckpt_io.load(path)
    try:
        cfg: TrainConfig = to_object(blob["config"], TrainConfig)
        cfg.features = to_object(blob.get("features", blob["config"]["features"]), FeatureConfig)
        tokenizer = tokenizer_from_dict(blob["vocab"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ckpt_io.CheckpointError(f"{path}: checkpoint lacks a usable config/vocab/features ({exc})") from None
    state, step, averaged = blob["model"], int(blob.get("state", {}).get("step", 0)), []
    if average_last > 1:
        rolling = ckpt_io.list_checkpoints(path.parent)
        if len(rolling) < average_last:
            raise ConfigError(f"average_last: {average_last} asked for but {path.parent} holds {len(rolling)} rolling "
                              f"checkpoint(s); lower average_last (training keeps trainer.keep_last of them)")
        averaged = rolling[-average_last:]
        state, step = ckpt_io.average_checkpoints(averaged)
        log.info("averaged the weights of %s", ", ".join(p.name for p in averaged))
    model = AcousticModel(cfg.model, cfg.features.n_mels, tokenizer.size)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ckpt_io.CheckpointError(f"{path}: weights do not fit the model its config describes: "
                                      f"{message_line(exc, last=True)}") from None
    featurizer = LogMel(cfg.features)
    featurizer.load_stats(blob.get("feature_stats"), path)
    run_dir = ckpt_io.run_dir_of(path)
    return LoadedModel(model=model.to(dev).eval(), featurizer=featurizer.to(dev).eval(),
                       tokenizer=tokenizer, config=cfg, device=dev, path=path, step=step, run_dir=run_dir,
                       averaged=averaged)


def load_engine(cfg: InferenceConfig) -> Engine:
    """What `cfg` asks to run: the checkpoint (backend=pytorch) or an exported model (onnx / torchscript: cfg.exported,
    else the checkpoint run's export/model.onnx or .pt). Both offer log_probs, tokenizer, sample_rate,
    frame_seconds, samples_per_frame and output_frames."""
    if cfg.backend == Backend.pytorch:
        return load_model(cfg.checkpoint, cfg.device, cfg.average_last)
    from asr.inference.exported import ExportError, default_export_path, load_exported

    if cfg.exported:
        path = Path(cfg.exported)
    else:
        path = default_export_path(resolve_checkpoint(cfg.checkpoint), str(cfg.backend))
        if not path.is_file():
            raise ExportError(f"backend={cfg.backend}: {path} not found; export the checkpoint first "
                              f"(asr-export checkpoint={cfg.checkpoint} format={cfg.backend}) or pass exported=PATH")
    return load_exported(path)


def recorded_decoding(engine: Engine) -> Optional[settings.Recorded]:
    """The decoding settings that travel with `engine`: decoding.json beside a checkpoint, or an export's sidecar
    "decoding" entry (LM paths relative to its folder); None when none were recorded."""
    if isinstance(engine, LoadedModel):
        return settings.for_checkpoint(engine.path)
    entry = getattr(engine, "meta", {}).get("decoding")
    if not entry:
        return None
    from asr.inference.exported import sidecar_path

    return settings.Recorded.from_dict(entry, str(sidecar_path(engine.path)), engine.path.parent)


def resolve_decoding(engine: Engine, beam: BeamConfig, decoders: list) -> BeamConfig:
    """`beam` completed from what travels with `engine` (asr.decoding.settings.resolve), logged in one line; a
    beam_lm decoder without any LM is refused here, naming both ways to give one."""
    resolved, how = settings.resolve(beam, recorded_decoding(engine))
    settings.require_lm(resolved, decoders)
    if any(str(d) == "beam_lm" for d in decoders):
        log.info("beam_lm decoding: %s", how)
    return resolved



def build_decoder(name: str, loaded: Engine, beam: BeamConfig, lm_weight: Optional[float] = None,
                  word_score: Optional[float] = None) -> DecodeFn:
    """One of DECODERS as a function of CPU log-probs; lm_weight/word_score override `beam`'s (LM tuning)."""
    tok = loaded.tokenizer
    if name == "greedy":
        return lambda log_probs, lengths: greedy_decode(log_probs, lengths, tok)
    if name not in DECODERS:
        raise ConfigError(f"decoder: unknown decoder {name!r}; choose from {', '.join(DECODERS)}")
    from asr.decoding.beam import BeamSearchDecoder  # flashlight-text is only loaded when a beam is wanted

    with_lm = name == "beam_lm"
    kwargs = dict(beam_size=beam.beam_size, beam_size_token=beam.beam_size_token, beam_threshold=beam.beam_threshold,
                  lm_path=beam.lm_path if with_lm else None, lexicon_path=beam.lexicon_path if with_lm else None,
                  lm_weight=next(w for w in (lm_weight, beam.lm_weight, DEFAULT_LM_WEIGHT) if w is not None),
                  word_score=next(w for w in (word_score, beam.word_score, DEFAULT_WORD_SCORE) if w is not None),
                  key_prefix="beam")
    workers = resolve_workers(beam.workers)
    if workers > 1:
        check_lm_files(kwargs["lm_path"], kwargs["lexicon_path"], "beam")  # here, not in a worker's traceback
        return ParallelBeamDecoder(tok, workers, **kwargs)
    dec = BeamSearchDecoder(tok, **kwargs)
    return dec.decode


# ------------------------------------------------------------------------------------------- manifests -> log-probs

@dataclass
class CachedLogProbs:
    """The acoustic model's output over a list of utterances, kept on the CPU (fp32) so decoders can re-run.

    batches: (utterance indices, log_probs (B, T', C), lengths (B,)) in duration order; missing: index -> why its
    audio could not be read (it is in no batch; its hypothesis is empty).
    """

    utts: list[Utterance]
    batches: list[tuple[list[int], torch.Tensor, torch.Tensor]]
    missing: dict[int, str]
    audio_seconds: float  # audio actually run through the model
    model_seconds: float  # wall-clock of front-end + model (device synchronized), reading excluded

    def decode(self, decoder: DecodeFn) -> tuple[list[str], float]:
        """Hypotheses in manifest order ("" for missing audio) and the seconds the decoder took."""
        hyps = [""] * len(self.utts)
        seconds = 0.0
        for idx, log_probs, lengths in self.batches:
            t0 = time.perf_counter()
            texts = decoder(log_probs, lengths)
            seconds += time.perf_counter() - t0
            for i, text in zip(idx, texts):
                hyps[i] = text
        return hyps, seconds


def _read(utts: list[Utterance], idx: list[int], sample_rate: int):
    waves, ok, errors = [], [], {}
    for i in idx:
        u = utts[i]
        try:
            waves.append(load_audio(u.audio_filepath, sample_rate, utt_id=u.id))
            ok.append(i)
        except AudioLoadError as exc:
            errors[i] = " ".join(str(exc).split())
    padded, lengths = pad_waves(waves)
    return ok, padded, lengths, errors


def cache_log_probs(loaded: LoadedModel, utts: list[Utterance], batch_seconds: float, desc: str = "",
                    progress: bool = True) -> CachedLogProbs:
    """Run the model once over `utts` in duration-sorted batches (padded seconds <= batch_seconds).

    Audio of any rate is resampled to the model's; a file that cannot be read is recorded in `missing` with a
    warning naming it, never fatal. The next batch is read on a thread while the model runs on this one.
    """
    durations = [max(float(u.duration), 0.0) for u in utts]
    budget = max(batch_seconds, max(durations, default=1.0))
    order = list(iter(DurationBucketSampler(durations, budget, num_buckets=1, shuffle=False)))
    out = CachedLogProbs(utts=utts, batches=[], missing={}, audio_seconds=0.0, model_seconds=0.0)
    sync = torch.cuda.synchronize if loaded.device.type == "cuda" else (lambda: None)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_read, utts, order[0], loaded.sample_rate) if order else None
        for k in tqdm(range(len(order)), desc=desc, leave=False, disable=not progress):
            ok, waves, lengths, errors = pending.result()
            if k + 1 < len(order):
                pending = pool.submit(_read, utts, order[k + 1], loaded.sample_rate)
            for i, msg in errors.items():
                log.warning("missing audio for utterance %s: %s", utts[i].id, msg)
            out.missing.update(errors)
            if not ok:
                continue
            t0 = time.perf_counter()
            log_probs, out_lengths = loaded.log_probs(waves, lengths)
            log_probs, out_lengths = log_probs[:, : int(out_lengths.max())].cpu(), out_lengths.cpu()
            sync()
            out.model_seconds += time.perf_counter() - t0
            out.audio_seconds += float(lengths.sum()) / loaded.sample_rate
            out.batches.append((ok, log_probs, out_lengths))
    return out
