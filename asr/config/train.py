"""Training schemas: `asr-train`'s whole configuration (configs/train.yaml and its presets extend these).
Every field has a one-line comment; cross-field rules sit in `__post_init__` (see asr.config.base.check)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from asr.config.base import Choice, check


class Normalize(Choice):
    utterance = "utterance"  # per-feature mean/variance over each utterance's valid frames
    corpus = "corpus"  # per-feature mean/variance over the training corpus ("global CMVN"; kept in checkpoints)
    none = "none"


class Units(Choice):
    char = "char"  # letters, apostrophe and space (29 classes with the blank)
    sentencepiece = "sentencepiece"  # subword pieces learned from the training transcripts (asr/text/pieces.py)


class PieceModel(Choice):
    unigram = "unigram"  # SentencePiece's unigram language model
    bpe = "bpe"  # byte-pair encoding


class RNNType(Choice):
    lstm = "lstm"
    gru = "gru"


class RNNInit(Choice):
    uniform = "uniform"  # PyTorch's default: every weight uniform in +-1/sqrt(hidden)
    orthogonal = "orthogonal"  # recurrent weights (weight_hh) orthogonal, as SpeechBrain's RNNs (`rnn_init`)


class FrontEnd(Choice):
    conv = "conv"  # one strided 3 x 3 conv per model.conv_channels entry, BatchNorm, Hardtanh (DeepSpeech2)
    vgg = "vgg"  # per entry a block of two 3 x 3 convs, LayerNorm, LeakyReLU, then max-pool (SpeechBrain's CRDNN)


class Order(Choice):
    shuffled = "shuffled"  # duration buckets shuffled inside, batches shuffled across buckets, anew each epoch
    ascending = "ascending"  # every epoch in ascending duration order, the same batches (SpeechBrain's CRDNN recipes)


class Schedule(Choice):
    onecycle = "onecycle"  # linear warm-up, cosine decay to optim.final_lr_frac
    noam = "noam"  # linear warm-up, inverse square root
    wsd = "wsd"  # linear warm-up, the peak held, linear decay to optim.final_lr_frac over the last optim.decay_frac


class Precision(Choice):
    fp32 = "fp32"
    fp16 = "fp16"  # autocast + GradScaler, CUDA only
    bf16 = "bf16"  # autocast; the CTC loss still sees fp32 log-probs (asr/model/forward.py)


@dataclass
class FeatureConfig:
    sample_rate: int = 16000  # Hz; audio at another rate is resampled (inference) or rejected (training)
    n_mels: int = 80  # F: mel bins
    win_ms: float = 25.0  # analysis window length
    hop_ms: float = 10.0  # frame shift; T = 1 + S // hop
    n_fft: int = 512  # FFT size, >= window length in samples
    log_floor: float = 1e-6  # added before log so silence does not give -inf
    normalize: Normalize = Normalize.utterance  # per-feature mean/var: utterance, corpus (training set) or none
    stats_utterances: int = 2000  # normalize=corpus: training utterances (evenly spaced) the statistics come from

    def __post_init__(self) -> None:
        self.normalize = Normalize.parse(self.normalize, "features.normalize")
        check(self.sample_rate >= 8000, "features.sample_rate", "must be >= 8000")
        check(self.n_mels >= 8, "features.n_mels", "must be >= 8")
        check(0 < self.hop_ms <= self.win_ms, "features.hop_ms", "must be in (0, win_ms]")
        check(self.n_fft >= self.win_length, "features.n_fft", f"must be >= window length ({self.win_length} samples)")
        check(self.log_floor > 0, "features.log_floor", "must be > 0")
        check(self.stats_utterances >= 1, "features.stats_utterances", "must be >= 1")

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))


@dataclass
class AugmentConfig:
    spec_augment: bool = True  # SpecAugment on training features only
    freq_masks: int = 2  # number of frequency masks per utterance
    freq_mask_width: int = 15  # max width (mel bins) of each frequency mask
    time_masks: int = 2  # number of time masks per utterance
    time_mask_max_frac: float = 0.05  # max width of each time mask as a fraction of the utterance's frames
    spec_augment_from_epoch: int = 0  # SpecAugment masks only from this epoch (0-based) on: a short run learns first
    # Masks only once the run's progress (the LR schedule's: steps or the wall-clock budget spent, whichever is
    # further) reaches this fraction: masks start at the same point of a budget on a slow and a fast host.
    spec_augment_from_progress: float = 0.0
    speed_perturb: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])  # speed factors to draw from; [] = off
    speed_per_batch: bool = True  # one factor per batch (padding stays as the sampler packed it); false: per utterance
    noise_snr_db: Optional[float] = None  # add white noise at this SNR (dB) to training audio; null = off
    vtlp: list[float] = field(default_factory=list)  # [min, max] VTLP warp per utterance, e.g. [0.9, 1.1]; [] = off

    def __post_init__(self) -> None:
        check(self.freq_masks >= 0 and self.time_masks >= 0, "augment.freq_masks/time_masks", "must be >= 0")
        check(0 <= self.time_mask_max_frac < 0.5, "augment.time_mask_max_frac", "must be in [0, 0.5)")
        check(self.spec_augment_from_epoch >= 0, "augment.spec_augment_from_epoch", "must be >= 0 (0: from the start)")
        check(0.0 <= self.spec_augment_from_progress < 1.0, "augment.spec_augment_from_progress",
              "must be in [0, 1) (0: from the start)")
        check(all(0.5 <= f <= 2.0 for f in self.speed_perturb), "augment.speed_perturb", "factors must be in [0.5, 2]")
        check(not self.vtlp or (len(self.vtlp) == 2 and 0.7 <= self.vtlp[0] <= self.vtlp[1] <= 1.3), "augment.vtlp",
              "must be [] (off) or [min, max] with 0.7 <= min <= max <= 1.3, e.g. [0.9, 1.1]")


@dataclass
class DataConfig:
    name: str = "synthetic"  # a label for logs
    train_manifests: list[str] = field(default_factory=lambda: ["data/synthetic/manifests/train.jsonl"])  # JSONL files
    dev_manifests: dict[str, str] = field(default_factory=dict)  # name -> JSONL; each preset names its own
    synth_preset: Optional[str] = None  # set: `asr-train` generates the built-in corpus (this preset) when missing
    synth_root: str = "data/synthetic"  # where the built-in corpus lives
    max_batch_seconds: float = 120.0  # sampler budget: total padded audio seconds per batch
    num_buckets: int = 10  # duration buckets (quantiles of the duration distribution)
    min_duration: float = 0.3  # drop shorter training utterances (seconds)
    max_duration: float = 20.0  # drop longer training utterances (seconds)
    sortagrad: bool = True  # first epoch in ascending duration order (DeepSpeech2)
    order: Order = Order.shuffled  # batch order of the other epochs: shuffled or ascending (the same every epoch)
    num_workers: int = 1  # DataLoader worker processes
    max_bad_fraction: float = 0.01  # abort if more than this fraction of utterances cannot be read
    dev_max_utterances: Optional[int] = None  # cap each dev set (deterministic first N) for quick validation

    def __post_init__(self) -> None:
        check(len(self.train_manifests) > 0, "data.train_manifests", "needs at least one manifest")
        check(self.max_batch_seconds > 0, "data.max_batch_seconds", "must be > 0")
        check(self.num_buckets >= 1, "data.num_buckets", "must be >= 1")
        check(0 <= self.min_duration < self.max_duration, "data.min_duration", "must be >= 0 and < data.max_duration")
        check(self.max_duration <= self.max_batch_seconds, "data.max_duration",
               f"must be <= data.max_batch_seconds ({self.max_batch_seconds}) or the longest utterances fit no batch")
        check(self.num_workers >= 0, "data.num_workers", "must be >= 0")
        check(0 <= self.max_bad_fraction <= 1, "data.max_bad_fraction", "must be in [0, 1]")


@dataclass
class ModelConfig:
    name: str = "small"  # preset label
    tokenizer: Units = Units.char  # output units: char, or sentencepiece (learned from the training transcripts)
    vocab_size: int = 256  # tokenizer=sentencepiece: pieces, at most (plus the blank); small corpora may give fewer
    piece_model: PieceModel = PieceModel.unigram  # tokenizer=sentencepiece: unigram or bpe
    frontend: FrontEnd = FrontEnd.conv  # conv (strided convs) or vgg (conv blocks + max-pool)
    conv_channels: list[int] = field(default_factory=lambda: [32, 32])  # one 2-D conv layer (vgg: block) per entry
    conv_time_strides: list[int] = field(default_factory=lambda: [2, 2])  # time stride per conv; product = subsampling
    conv_freq_strides: Optional[list[int]] = None  # mel-axis stride per conv (1 or 2); None = 2 for every conv
    conv_dropout: float = 0.0  # Dropout2d (whole channels) after each conv layer / vgg block (CRDNN: 0.15)
    rnn_type: RNNType = RNNType.lstm  # lstm or gru
    rnn_init: RNNInit = RNNInit.uniform  # recurrent weights at the start: uniform (PyTorch's) or orthogonal
    rnn_hidden: int = 256  # hidden units per direction
    rnn_layers: int = 3  # stacked recurrent layers
    rnn_layer_norm: bool = True  # LayerNorm on each recurrent layer's output (SpeechBrain's CRDNN has none)
    bidirectional: bool = True  # False for streaming (then use lookahead)
    lookahead: int = 0  # future frames of the lookahead convolution (unidirectional models only)
    dropout: float = 0.1  # between recurrent layers and before the head
    dnn_neurons: int = 0  # > 0: a Linear -> LayerNorm -> LeakyReLU -> dropout block of this width before the head
    # Intermediate CTC (Lee & Watanabe, 2021): training adds inter_ctc_weight x the CTC loss of an intermediate
    # recurrent layer's output, read through the same head (no extra parameters; inference is unchanged).
    inter_ctc_weight: float = 0.0  # 0 = off; the loss is (1 - w) x final CTC + w x intermediate CTC
    inter_ctc_layer: Optional[int] = None  # 1-based recurrent layer; None = the middle one, (rnn_layers + 1) // 2
    # Self-conditioned CTC (Nozaki & Komatsu, Interspeech 2021): the intermediate layer's CTC posteriors, projected
    # back to its width by a linear layer, are added to its output, so the layers above refine a first guess. Runs
    # in training and inference (adds vocab x width parameters); needs inter_ctc_weight > 0.
    self_condition: bool = False
    # Output upsampling: the head emits this many CTC frames per encoder frame (a linear layer to k x C, reshaped), so
    # the recurrent layers run at the conv's frame rate and CTC sees k times as many frames (e.g. 40 ms encoder
    # frames, 20 ms CTC frames). 1 = off.
    output_upsample: int = 1

    def __post_init__(self) -> None:
        self.rnn_type = RNNType.parse(self.rnn_type, "model.rnn_type")
        self.rnn_init = RNNInit.parse(self.rnn_init, "model.rnn_init")
        self.tokenizer = Units.parse(self.tokenizer, "model.tokenizer")
        self.piece_model = PieceModel.parse(self.piece_model, "model.piece_model")
        check(self.vocab_size >= 32, "model.vocab_size", f"must be >= 32 (the 27 characters need a piece each), got "
              f"{self.vocab_size}")
        self.frontend = FrontEnd.parse(self.frontend, "model.frontend")
        check(self.dnn_neurons >= 0, "model.dnn_neurons", "must be >= 0 (0: no DNN block)")
        check(self.frontend == "conv" or self.conv_freq_strides is None, "model.conv_freq_strides",
              "applies to model.frontend=conv only (vgg pools the mel bins by 2 per block); set it to null")
        check(len(self.conv_channels) == len(self.conv_time_strides) and len(self.conv_channels) >= 1,
               "model.conv_time_strides", "must have one entry per model.conv_channels entry (at least one)")
        if self.conv_freq_strides is not None:
            check(len(self.conv_freq_strides) == len(self.conv_channels) and set(self.conv_freq_strides) <= {1, 2},
                  "model.conv_freq_strides", "must have one entry, 1 or 2, per model.conv_channels entry "
                  "(or be null: every conv halves the mel bins)")
        sub = self.encoder_subsampling
        check(sub in (1, 2, 3, 4, 6, 8), "model.conv_time_strides", f"product (time subsampling) must be 1, 2, 3, 4, 6 "
              f"or 8, got {sub} (1: the recurrent layers at the 10 ms feature rate; 3: 30 ms frames; 8 suits "
              "model.tokenizer=sentencepiece: pieces are about half as many as characters)")
        check(self.output_upsample in (1, 2), "model.output_upsample",
              f"must be 1 or 2 (CTC frames per encoder frame), got {self.output_upsample}")
        check(self.output_upsample == 1 or sub >= 2, "model.output_upsample",
              "needs model.conv_time_strides to subsample time (CTC frames cannot be finer than the 10 ms features); "
              "set model.output_upsample=1")
        check(self.output_upsample == 1 or self.bidirectional, "model.output_upsample",
              "is not supported by streaming (unidirectional) models yet; set model.output_upsample=1")
        check(self.rnn_hidden >= 8 and self.rnn_layers >= 1, "model.rnn_hidden/rnn_layers", "must be >= 8 / >= 1")
        check(self.lookahead >= 0, "model.lookahead", "must be >= 0")
        check(not (self.bidirectional and self.lookahead), "model.lookahead",
               "only applies to unidirectional models; set model.bidirectional=false or model.lookahead=0")
        check(0 <= self.dropout < 1, "model.dropout", "must be in [0, 1)")
        check(0 <= self.conv_dropout < 1, "model.conv_dropout", "must be in [0, 1) (0: none)")
        check(0 <= self.inter_ctc_weight < 1, "model.inter_ctc_weight", "must be in [0, 1) (0 turns it off)")
        if self.inter_ctc_layer is None:  # the default, the middle layer: only the depth can be at fault
            check(self.rnn_layers >= 2 or self.inter_ctc_weight == 0, "model.rnn_layers",
                  f"{self.rnn_layers} recurrent layer leaves none below the last for intermediate CTC "
                  f"(model.inter_ctc_weight={self.inter_ctc_weight}); use model.rnn_layers >= 2, or "
                  f"model.inter_ctc_weight=0 to turn intermediate CTC off")
        check(1 <= self.inter_layer < self.rnn_layers or self.inter_ctc_weight == 0, "model.inter_ctc_layer",
              f"must name a recurrent layer below the last, 1..{self.rnn_layers - 1}, got {self.inter_layer} "
              f"(or set model.inter_ctc_weight=0)")
        check(not self.self_condition or self.inter_ctc_weight > 0, "model.self_condition",
              "conditions the upper layers on the intermediate CTC layer; set model.inter_ctc_weight > 0 (e.g. 0.3) "
              "or model.self_condition=false")

    @property
    def inter_layer(self) -> int:
        """The intermediate CTC layer (1-based): model.inter_ctc_layer, or the middle of the stack."""
        return self.inter_ctc_layer if self.inter_ctc_layer is not None else (self.rnn_layers + 1) // 2

    @property
    def encoder_subsampling(self) -> int:
        """Feature frames per encoder (recurrent) frame: the product of model.conv_time_strides."""
        sub = 1
        for s in self.conv_time_strides:
            sub *= s
        return sub

    @property
    def subsampling(self) -> int:
        """Feature frames per output (CTC) frame: the encoder's subsampling over model.output_upsample."""
        return self.encoder_subsampling // self.output_upsample


@dataclass
class OptimConfig:
    name: str = "adamw"  # preset label
    lr: float = 1.5e-3  # peak learning rate
    weight_decay: float = 1e-2  # AdamW decoupled weight decay
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])  # AdamW betas
    schedule: Schedule = Schedule.onecycle  # onecycle (warm-up, cosine decay), noam (warm-up, 1/sqrt) or wsd
    # (warm-up, stable at the peak, linear decay over the last decay_frac)
    warmup_steps: int = 300  # steps of linear warm-up
    total_steps: Optional[int] = None  # decay horizon for onecycle and wsd; null = estimated from epochs x batches
    final_lr_frac: float = 0.02  # onecycle / wsd floor as a fraction of lr
    decay_frac: float = 0.2  # wsd: the last fraction of the run that decays from the peak to the floor
    grad_clip: float = 5.0  # max global grad norm
    accum_steps: int = 1  # gradient accumulation (batches per optimizer step)

    def __post_init__(self) -> None:
        self.schedule = Schedule.parse(self.schedule, "optim.schedule")
        check(self.lr > 0, "optim.lr", "must be > 0")
        check(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "optim.betas", "two values in [0, 1)")
        check(self.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
        check(self.total_steps is None or self.total_steps > self.warmup_steps, "optim.total_steps",
               "must be > optim.warmup_steps")
        check(0 <= self.final_lr_frac <= 1, "optim.final_lr_frac", "must be in [0, 1]")
        check(0 < self.decay_frac <= 1, "optim.decay_frac", "must be in (0, 1] (1 = a linear decay from the start)")
        check(self.grad_clip > 0, "optim.grad_clip", "must be > 0")
        check(self.accum_steps >= 1, "optim.accum_steps", "must be >= 1")


@dataclass
class TrainerConfig:
    max_epochs: int = 30  # epochs to train
    max_steps: Optional[int] = None  # stop after this many optimizer steps (overrides epochs when reached)
    max_minutes: Optional[float] = None  # wall-clock budget; stops at the next step boundary, then validates
    seed: int = 1234  # seeds model init, sampler order and augmentation
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    precision: Precision = Precision.fp32  # fp32, fp16 (autocast + GradScaler, CUDA only) or bf16
    deterministic: bool = False  # torch.use_deterministic_algorithms; exact resume tests use it
    threads: Optional[int] = None  # torch intra-op threads on CPU; null = torch default
    log_every: int = 20  # steps between TensorBoard scalar writes
    val_every_epochs: int = 1  # validate every N epochs
    val_every_steps: Optional[int] = None  # also validate every N steps
    checkpoint_every_steps: Optional[int] = None  # write a checkpoint every N steps (besides epoch ends)
    keep_last: int = 3  # rolling checkpoints kept (plus best.pt)
    resume: str = "auto"  # "auto" (newest complete checkpoint in the run dir), "never", or a checkpoint path
    max_bad_steps: int = 20  # abort after this many consecutive non-finite losses/gradients
    num_images: int = 3  # dev utterances whose spectrogram/posteriorgram go to TensorBoard
    progress: bool = True  # tqdm progress bars

    def __post_init__(self) -> None:
        self.precision = Precision.parse(self.precision, "trainer.precision")
        check(self.max_epochs >= 1, "trainer.max_epochs", "must be >= 1")
        check(self.max_steps is None or self.max_steps >= 1, "trainer.max_steps", "must be >= 1 or null")
        check(self.keep_last >= 1, "trainer.keep_last", "must be >= 1")
        check(self.max_bad_steps >= 1, "trainer.max_bad_steps", "must be >= 1")
        check(self.log_every >= 1, "trainer.log_every", "must be >= 1")


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    run_dir: Optional[str] = None  # null = Hydra's output dir (or the cwd when called from Python)
