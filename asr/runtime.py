"""Everything a training run holds (`Components`) and how it is built from a validated `TrainConfig`.

Kept apart from train.py so the loop stays on one screen and evaluation can reuse the same pieces.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from asr import distributed as dist_utils
from asr.augment import SpecAugment
from asr.config import ConfigError, TrainConfig
from asr.ctc import ctc_loss, required_frames
from asr.data.dataset import AudioDataset, BadDataGuard, Batch, make_loader
from asr.data.manifest import Utterance, read_manifest
from asr.data.sampler import DurationBucketSampler
from asr.features import LogMel
from asr.model import AcousticModel
from asr.optim import build_optimizer
from asr.text import CharTokenizer

log = logging.getLogger("asr.train")


def config_dir() -> Path:
    """configs/ at the repository root (the package is installed editable from the checkout)."""
    env = os.environ.get("ASR_CONFIG_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "configs"


def resolve_run_dir(cfg: TrainConfig) -> Path:
    """`run_dir` if set, else Hydra's output dir when running under Hydra, else the current directory."""
    if cfg.run_dir:
        path = Path(cfg.run_dir)
    else:
        try:
            from hydra.core.hydra_config import HydraConfig
            path = Path(HydraConfig.get().runtime.output_dir)
        except ValueError:
            path = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    return path


def setup_logging(run_dir: Path, is_main: bool) -> None:
    """Console + run_dir/train.log on rank 0 (Hydra already configures both when it launched us)."""
    root = logging.getLogger()
    if not is_main:
        root.setLevel(logging.WARNING)
        return
    root.setLevel(logging.INFO)
    target = str((run_dir / "train.log").resolve())
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == target for h in root.handlers):
        fh = logging.FileHandler(target)
        fh.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        root.addHandler(fh)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in root.handlers):
        root.addHandler(logging.StreamHandler(sys.stderr))


def pick_device(spec: str, key: str = "trainer.device", local_rank: int = 0) -> torch.device:
    """"auto" -> this rank's GPU if there is one, else the CPU; `key` names the config key in errors."""
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}: {spec!r} asked for but CUDA is not available; use {key}=cpu")
    if spec == "cuda":
        return torch.device(f"cuda:{local_rank}")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"{key}: {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None


@dataclass
class Components:
    cfg: TrainConfig
    run_dir: Path
    dist: dist_utils.DistInfo
    device: torch.device
    tokenizer: CharTokenizer
    featurizer: LogMel
    spec_augment: SpecAugment
    raw_model: AcousticModel
    model: torch.nn.Module  # raw_model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: Optional[torch.dtype]
    train_dataset: AudioDataset
    train_sampler: DurationBucketSampler
    train_loader: torch.utils.data.DataLoader
    bad_data: BadDataGuard
    dev_sets: dict  # name -> (AudioDataset, list of index batches for this rank)
    estimated_total_steps: int
    train_hours: float
    last_grad_norm: float = 0.0
    zeroed_total: int = 0
    consumed_in_pass: int = 0  # batches consumed from the current pass over train_sampler (for its state_dict)
    _metrics_file: Optional[object] = field(default=None, repr=False)

    def log_step(self, state, out: dict) -> None:
        """Per-step record in run_dir/metrics.jsonl (rank 0): the exact-resume test compares these."""
        self.last_grad_norm = out.get("grad_norm", self.last_grad_norm)
        if out["zeroed"]:
            self.zeroed_total += out["zeroed"]
            log.warning("step %d: %d utterance(s) had an infinite CTC loss and were zeroed", state.step,
                        out["zeroed"])
        if not self.dist.is_main:
            return
        if self._metrics_file is None:
            self._metrics_file = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        rec = {"step": state.step, "epoch": state.epoch, "loss": float(out["loss"]),
               "lr": self.optimizer.param_groups[0]["lr"], "grad_norm": out.get("grad_norm"),
               "skipped": bool(out.get("skipped"))}
        self._metrics_file.write(json.dumps(rec) + "\n")


def _ensure_corpus(cfg: TrainConfig) -> None:
    """Generate the built-in corpus when a synthetic preset is configured and its manifests are missing."""
    d = cfg.data
    if d.synth_preset and not all(Path(m).is_file() for m in [*d.train_manifests, *d.dev_manifests.values()]):
        from asr.data import synthetic
        log.info("built-in corpus not found: generating preset %r into %s", d.synth_preset, d.synth_root)
        synthetic.generate(d.synth_preset, Path(d.synth_root))


def filter_trainable(utts: list[Utterance], tokenizer: CharTokenizer, featurizer: LogMel, model: AcousticModel,
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


def _dev_sets(cfg: TrainConfig, tokenizer: CharTokenizer, info: dist_utils.DistInfo) -> dict:
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
    tokenizer = CharTokenizer()
    featurizer = LogMel(cfg.features).to(device)
    model = AcousticModel(cfg.model, cfg.features.n_mels, tokenizer.size).to(device)
    utts = [u for m in cfg.data.train_manifests for u in read_manifest(m)]
    utts = filter_trainable(utts, tokenizer, featurizer, model, cfg)
    durations = [u.duration for u in utts]
    sampler = DurationBucketSampler(durations, cfg.data.max_batch_seconds, num_buckets=cfg.data.num_buckets,
                                    shuffle=True, seed=tr.seed, sortagrad=cfg.data.sortagrad,
                                    rank=info.rank, world_size=info.world_size)
    dataset = AudioDataset(utts, tokenizer, sample_rate=cfg.features.sample_rate,
                           speed_perturb=cfg.augment.speed_perturb, noise_snr_db=cfg.augment.noise_snr_db,
                           seed=tr.seed)
    loader = make_loader(dataset, sampler, cfg.data.num_workers, pin_memory=device.type == "cuda")
    wrapped = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if info.enabled else model
    amp = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[tr.precision]
    total = max(1, tr.max_epochs * len(sampler) // cfg.optim.accum_steps)
    if tr.max_steps:
        total = min(total, tr.max_steps)
    spec = SpecAugment(cfg.augment).to(device) if cfg.augment.spec_augment else _NoAugment()
    return Components(
        cfg=cfg, run_dir=run_dir, dist=info, device=device, tokenizer=tokenizer, featurizer=featurizer,
        spec_augment=spec, raw_model=model, model=wrapped,
        optimizer=build_optimizer(model, cfg.optim),
        scaler=torch.amp.GradScaler(device.type, enabled=tr.precision == "fp16"), amp_dtype=amp,
        train_dataset=dataset, train_sampler=sampler, train_loader=loader,
        bad_data=BadDataGuard(cfg.data.max_bad_fraction, len(utts)), dev_sets=_dev_sets(cfg, tokenizer, info),
        estimated_total_steps=total, train_hours=sum(durations) / 3600)


class _NoAugment(torch.nn.Module):
    def forward(self, feats, lengths, generator=None):
        return feats


@torch.no_grad()
def evaluate_loss_batches(c: Components, dataset: AudioDataset, batches: list[list[int]],
                          desc: str) -> Iterator[tuple[Batch, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Run the model over fixed dev batches: yields (batch, log_probs (B,T',C), out_lengths (B,), losses (B,))."""
    for idx in tqdm(batches, desc=desc, leave=False, disable=not (c.cfg.trainer.progress and c.dist.is_main)):
        batch = dataset[idx]
        if len(batch) == 0:
            continue
        batch = batch.to(c.device)
        feats, frames = c.featurizer(batch.waves, batch.wave_lengths)
        with torch.autocast(device_type=c.device.type, dtype=c.amp_dtype, enabled=c.amp_dtype is not None):
            log_probs, out_lengths = c.raw_model(feats, frames)
        losses, _ = ctc_loss(log_probs, out_lengths, batch.targets, batch.target_lengths)
        yield batch, log_probs.float(), out_lengths, losses
