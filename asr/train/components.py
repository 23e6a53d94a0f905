"""The built parts of a training run (`Components`) and how they are built from a validated `TrainConfig`:
device, data (filtered, bucketed, DDP-sharded), model, optimizer, loaders, dev sets.

Kept apart from train.py so the loop stays on one screen. Inference imports nothing from here.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from asr.config import ConfigError, TrainConfig
from asr.data.dataset import AudioDataset, BadDataGuard, Batch, make_loader
from asr.data.manifest import Utterance, read_manifest
from asr.data.sampler import DurationBucketSampler
from asr.device import pick_device
from asr.model.acoustic import AcousticModel
from asr.model.augment import FeatureAugment
from asr.model.ctc import required_frames
from asr.model.features import LogMel
from asr.model.forward import amp_dtype
from asr.text import CharTokenizer, Tokenizer, load_tokenizer, save_tokenizer, train_pieces
from asr.train import distributed as dist_utils
from asr.train.optim import build_optimizer

log = logging.getLogger("asr.train")

TOKENIZER_FILE = "tokenizer.json"  # in the run dir: the pieces a run learned (asr.text.load_tokenizer reads it)


@dataclass(frozen=True)
class Trainee:
    """What a training step needs (asr/train/step.py): the model and all that turns a batch into an update. A training
    run's Components are one; the benchmarks build one with `build_trainee`, so they time the trainer's own step."""

    cfg: TrainConfig
    device: torch.device
    featurizer: LogMel
    feature_augment: Optional[FeatureAugment]  # VTLP and/or SpecAugment masks; None when both are off
    raw_model: AcousticModel
    model: torch.nn.Module  # raw_model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: Optional[torch.dtype]


def build_trainee(cfg: TrainConfig, device: torch.device, vocab_size: int,
                  wrap: Optional[Callable[[AcousticModel], torch.nn.Module]] = None) -> Trainee:
    """Front-end, augmentation, model (initialised from the current RNG state), optimizer and scaler for `cfg`;
    `wrap` turns the model into what the step calls (DDP), default the model itself."""
    featurizer = LogMel(cfg.features).to(device)
    model = AcousticModel(cfg.model, cfg.features.n_mels, vocab_size).to(device)
    augment = FeatureAugment(cfg.augment, cfg.features).to(device) if FeatureAugment.wanted(cfg.augment) else None
    return Trainee(cfg=cfg, device=device, featurizer=featurizer, feature_augment=augment, raw_model=model,
                   model=wrap(model) if wrap else model, optimizer=build_optimizer(model, cfg.optim),
                   scaler=torch.amp.GradScaler(device.type, enabled=cfg.trainer.precision == "fp16"),
                   amp_dtype=amp_dtype(cfg.trainer.precision))


@dataclass(frozen=True)
class Components(Trainee):
    """The built parts of a training run, read-only once built; the loop's state lives in asr.train.state.TrainState."""

    run_dir: Path
    dist: dist_utils.DistInfo
    tokenizer: Tokenizer
    train_dataset: AudioDataset
    train_sampler: DurationBucketSampler
    train_loader: Iterable[Batch]  # a DataLoader yielding one Batch per sampler batch
    bad_data: BadDataGuard
    dev_sets: dict  # name -> (AudioDataset, list of index batches for this rank)
    estimated_total_steps: int
    train_hours: float


def _ensure_corpus(cfg: TrainConfig) -> None:
    """Generate the built-in corpus when a synthetic preset is configured and its manifests are missing."""
    d = cfg.data
    if d.synth_preset and not all(Path(m).is_file() for m in [*d.train_manifests, *d.dev_manifests.values()]):
        from asr.data import synthetic
        log.info("built-in corpus not found: generating preset %r into %s", d.synth_preset, d.synth_root)
        synthetic.generate(d.synth_preset, Path(d.synth_root))


def build_tokenizer(cfg: TrainConfig, utts: list[Utterance], run_dir: Path, info: dist_utils.DistInfo) -> Tokenizer:
    """Characters, or SentencePiece pieces learned from the training transcripts by rank 0 and written to
    RUN_DIR/tokenizer.json, which the other ranks read. Learning is deterministic, so a resumed run learns the same
    pieces again (the checkpoint's own are compared when it loads: asr/train/resume.py)."""
    m = cfg.model
    if m.tokenizer == "char":
        return CharTokenizer()
    path = run_dir / TOKENIZER_FILE
    if info.is_main:
        try:
            tokenizer = train_pieces((u.text for u in utts), m.vocab_size, m.piece_model.value)
        except ValueError as exc:
            raise ConfigError(f"model.vocab_size: {exc}; lower model.vocab_size or use model.tokenizer=char") from None
        save_tokenizer(tokenizer, path)
        log.info("model.tokenizer=sentencepiece: %d %s pieces learned from %d training transcripts (%s)",
                 tokenizer.size - 1, m.piece_model.value, len(utts), path)
    dist_utils.barrier()
    return tokenizer if info.is_main else load_tokenizer(path)


def filter_trainable(utts: list[Utterance], tokenizer: Tokenizer, featurizer: LogMel, model: AcousticModel,
                     cfg: TrainConfig) -> list[Utterance]:
    """Drop utterances outside the duration range and those CTC cannot fit (T' < U + repeats), naming them."""
    sr = cfg.features.sample_rate
    keep, too_short, too_long, infeasible = [], [], [], []
    for u in utts:
        if u.duration < cfg.data.min_duration:
            too_short.append(u.id)
            continue
        if u.duration > cfg.data.max_duration:
            too_long.append(u.id)
            continue
        frames = featurizer.output_lengths(torch.tensor([int(round(u.duration * sr))]))
        t_out = int(model.output_lengths(frames)[0])
        if t_out < required_frames(tokenizer.encode(u.text)):
            infeasible.append(u.id)
            continue
        keep.append(u)
    for what, ids in (("shorter than data.min_duration", too_short), ("longer than data.max_duration", too_long),
                      ("CTC-infeasible (transcript longer than the model's output frames)", infeasible)):
        if ids:
            log.warning("dropped %d training utterance(s) %s: %s%s", len(ids), what, ", ".join(ids[:10]),
                        " ..." if len(ids) > 10 else "")
    if not keep:
        raise ConfigError("data.train_manifests: no training utterance is left after filtering; check "
                          "data.min_duration/data.max_duration and run `asr-data doctor` on the manifests")
    return keep


def fit_feature_stats(featurizer: LogMel, utts: list[Utterance], tokenizer: Tokenizer, cfg: TrainConfig) -> None:
    """features.normalize=corpus: the per-bin log-mel statistics of up to features.stats_utterances training
    utterances, evenly spaced over the manifest (the same on every rank; a resumed run loads them instead)."""
    n = min(cfg.features.stats_utterances, len(utts))
    chosen = [utts[i * len(utts) // n] for i in range(n)]
    dataset = AudioDataset(chosen, tokenizer, sample_rate=cfg.features.sample_rate)
    device = featurizer.mean.device
    batches = (dataset[list(range(i, min(i + 32, n)))] for i in range(0, n, 32))
    frames = featurizer.fit_stats((b.waves.to(device), b.wave_lengths.to(device)) for b in batches if len(b))
    log.info("features.normalize=corpus: log-mel statistics from %d training utterances (%d frames)", n, frames)


def _dev_sets(cfg: TrainConfig, tokenizer: Tokenizer, info: dist_utils.DistInfo) -> dict:
    """Each dev set sharded by utterance index across ranks (nothing dropped), batched by duration, no shuffle."""
    sets = {}
    for name, path in cfg.data.dev_manifests.items():
        utts = read_manifest(path)
        if cfg.data.dev_max_utterances:
            utts = utts[: cfg.data.dev_max_utterances]
        mine = utts[info.rank:: info.world_size]
        ds = AudioDataset(mine, tokenizer, sample_rate=cfg.features.sample_rate)
        budget = max(cfg.data.max_batch_seconds, max((u.duration for u in mine), default=1.0))
        sampler = DurationBucketSampler([u.duration for u in mine], budget, num_buckets=1, shuffle=False)
        sets[name] = (ds, list(iter(sampler)) if mine else [])
    return sets


def build(cfg: TrainConfig, run_dir: Path) -> Components:
    """Device, data, model, optimizer and loaders from a validated config."""
    tr = cfg.trainer
    if tr.threads:
        torch.set_num_threads(tr.threads)
    probe_device = "cuda" if (tr.device.startswith("cuda") or (tr.device == "auto" and torch.cuda.is_available())) \
        else "cpu"
    info = dist_utils.setup(probe_device)
    device = pick_device(tr.device, local_rank=info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if tr.precision == "fp16" and device.type != "cuda":
        raise ConfigError("trainer.precision: fp16 needs a CUDA device; use trainer.precision=bf16 or fp32 on CPU")
    # Variable-length batches: cuDNN autotuning would re-benchmark every new shape, costing more than it saves.
    torch.backends.cudnn.benchmark = False
    if tr.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
    torch.manual_seed(tr.seed)

    if info.is_main:
        _ensure_corpus(cfg)
    dist_utils.barrier()
    utts = [u for m in cfg.data.train_manifests for u in read_manifest(m)]
    tokenizer = build_tokenizer(cfg, utts, run_dir, info)
    ddp = (lambda m: DDP(m, device_ids=[device.index] if device.type == "cuda" else None)) if info.enabled else None
    trainee = build_trainee(cfg, device, tokenizer.size, wrap=ddp)
    featurizer, model = trainee.featurizer, trainee.raw_model
    utts = filter_trainable(utts, tokenizer, featurizer, model, cfg)
    if cfg.features.normalize == "corpus":
        fit_feature_stats(featurizer, utts, tokenizer, cfg)
    durations = [u.duration for u in utts]
    # Speed perturbation stretches an utterance by up to 1 / min(factors) after the sampler packed it: batches are
    # packed on that worst case, so their padded audio stays within data.max_batch_seconds (the GPU memory budget).
    stretch = max((1.0 / f for f in cfg.augment.speed_perturb), default=1.0)
    packed = [min(d * stretch, cfg.data.max_batch_seconds) for d in durations]
    sampler = DurationBucketSampler(packed, cfg.data.max_batch_seconds, num_buckets=cfg.data.num_buckets,
                                    shuffle=True, seed=tr.seed, sortagrad=cfg.data.sortagrad,
                                    ascending=cfg.data.order == "ascending",
                                    rank=info.rank, world_size=info.world_size)
    dataset = AudioDataset(utts, tokenizer, sample_rate=cfg.features.sample_rate,
                           speed_perturb=cfg.augment.speed_perturb, noise_snr_db=cfg.augment.noise_snr_db,
                           seed=tr.seed, speed_per_batch=cfg.augment.speed_per_batch)
    loader = make_loader(dataset, sampler, cfg.data.num_workers, pin_memory=device.type == "cuda")
    total = max(1, tr.max_epochs * len(sampler) // cfg.optim.accum_steps)
    if tr.max_steps:
        total = min(total, tr.max_steps)
    return Components(
        **{f.name: getattr(trainee, f.name) for f in fields(Trainee)}, run_dir=run_dir, dist=info,
        tokenizer=tokenizer, train_dataset=dataset, train_sampler=sampler, train_loader=loader,
        bad_data=BadDataGuard(cfg.data.max_bad_fraction, len(utts)), dev_sets=_dev_sets(cfg, tokenizer, info),
        estimated_total_steps=total, train_hours=sum(durations) / 3600)
