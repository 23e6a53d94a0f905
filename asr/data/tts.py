"""Text-to-speech engines for the built-in corpus (asr.data.synthetic): find espeak-ng and flite and the voices
of ours they offer, and render one planned utterance (a Job) to 16 kHz audio.

A speaker is (engine, voice, variant, pitch, rate). espeak-ng variants (the timbre: formants, pitch range) are
grouped into families by split (TRAIN_VARIANTS, DEV_VARIANTS, TEST_VARIANTS) so dev and test hear voices never
heard in training; flite voices are few, so all of them serve every split.
"""
from __future__ import annotations

import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from asr.audio import write_flac
from asr.data.sentences import Sentence
from asr.errors import UserError

SAMPLE_RATE = 16000

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                  "en-029", "en-us-nyc")
# Variants with echo, robot, whisper or novelty effects are left out. Families that share formant settings
# (steph*, iven*, the "88 85 154" females, robert/rob/quincy, Gene*) stay on one side of the hold-out.
DEV_VARIANTS = ("m3", "f2", "klatt3", "Gene", "Gene2", "quincy", "rob", "robert", "steph", "steph2", "steph3")
TEST_VARIANTS = ("m6", "f4", "aunty", "linda", "belinda", "klatt5", "iven", "iven2", "iven3", "iven4")
TRAIN_VARIANTS = ("m1", "m2", "m4", "m5", "m7", "m8", "f1", "f3", "f5", "klatt", "klatt2", "klatt4", "klatt6",
                  "Alex", "Andy", "AnxiousAndy", "Annie", "Andrea", "Alicia", "anika", "Denis", "Diogo",
                  "Henrique", "Hugo", "michel", "miguel", "Jacky", "Lee", "Mario", "Michael", "Mike", "Nguyen",
                  "Storm", "adam", "antonio", "benjamin", "boris", "david", "ed", "edward", "edward2", "gustave",
                  "john", "marcelo", "max", "norbert", "pablo", "paul", "pedro", "sandro", "shelby", "travis",
                  "victor", "grandpa", "grandma", "zac")
SPLIT_VARIANTS = {"train": TRAIN_VARIANTS, "dev": DEV_VARIANTS, "test": TEST_VARIANTS}
# flite voice -> median F0 in Hz of its default reading (measured); pitch is drawn around it.
# kal is an 8 kHz diphone voice (band-limited, like a phone line); awb_time is a clock-only voice.
FLITE_VOICES = {"kal": 95.0, "kal16": 95.0, "awb": 128.0, "rms": 100.0, "slt": 166.0}
FLITEVOX_DIRS = (Path("/usr/share/flite"), Path("/usr/local/share/flite"))  # extra *.flitevox, pitch kept
ESPEAK_AMPLITUDE = 35  # espeak-ng -a; its default 100 clips some variants (iven, klatt5); level is reset anyway


class EngineMissing(UserError):
    """A text-to-speech program is not installed or lacks the voices the corpus needs."""


class SynthesisError(UserError):
    """A text-to-speech program failed on one utterance; the message names the command."""


@dataclass(frozen=True)
class Speaker:
    id: str
    split: str
    engine: str     # "espeak-ng" | "flite"
    voice: str      # espeak-ng accent ("en-gb-x-rp") or flite voice ("slt", or a .flitevox path)
    variant: str    # espeak-ng variant ("m3"); "" for flite
    pitch: float    # espeak-ng: -p 0..99; flite: int_f0_target_mean in Hz (0: the voice's own)
    rate: float     # espeak-ng: -s words per minute; flite: duration_stretch (>1 is slower)


@dataclass(frozen=True)
class Job:
    """One utterance to render; everything random is already drawn, so workers are deterministic."""
    id: str
    path: str
    speaker: Speaker
    sentence: Sentence
    pitch: float
    rate: float
    gain_db: float
    lead_s: float
    trail_s: float
    noise_db: float
    noise_seed: int
    binary: str     # the engine's resolved path


# ------------------------------------------------------------------------------------------------ engines


def _run(cmd: list[str], text: str | None = None) -> bytes:
    try:
        done = subprocess.run(cmd, input=text.encode() if text is not None else None, capture_output=True,
                              timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SynthesisError(f"`{' '.join(cmd[:3])} ...` failed: {exc}") from exc
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise SynthesisError(f"`{' '.join(cmd)}` exited with status {done.returncode}: "
                             f"{err[0] if err else 'no message'}")
    return done.stdout


def _version(binary: str) -> str:
    # flite --version exits with status 1; the text is all we want.
    done = subprocess.run([binary, "--version"], capture_output=True, timeout=30, check=False)
    lines = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else "unknown"


def find_engines() -> dict:
    """The installed engines and the voices of ours they offer; EngineMissing if either engine is absent."""
    found = {}
    for name, package in (("espeak-ng", "espeak-ng"), ("flite", "flite")):
        binary = shutil.which(name)
        if binary is None:
            raise EngineMissing(f"text-to-speech program `{name}` not found on PATH; install it "
                                f"(`apt-get install {package}`) or add its folder to PATH")
        found[name] = binary
    listing = _run([found["espeak-ng"], "--voices=en"]).decode(errors="replace").splitlines()[1:]
    codes = {line.split()[1] for line in listing if len(line.split()) > 1}
    accents = [a for a in ESPEAK_ACCENTS if a in codes]
    variants_out = _run([found["espeak-ng"], "--voices=variant"]).decode(errors="replace")
    variants = set(re.findall(r"!v/(\S+)", variants_out))
    flite_out = _run([found["flite"], "-lv"]).decode(errors="replace")
    flite = {v: f0 for v, f0 in FLITE_VOICES.items() if v in flite_out.split()}
    for d in FLITEVOX_DIRS:
        for vox in sorted(d.rglob("*.flitevox")) if d.is_dir() else []:
            flite[str(vox)] = 0.0
    split_variants = {s: [v for v in names if v in variants] for s, names in SPLIT_VARIANTS.items()}
    if not accents or not flite or not all(split_variants.values()):
        raise EngineMissing("espeak-ng/flite lack the English voices the corpus needs (accents "
                            f"{accents}, flite {sorted(flite)}); install espeak-ng-data and flite from Debian")
    version = {k: _version(b) for k, b in found.items()}
    return {"binaries": found, "versions": version, "accents": accents, "variants": split_variants,
            "flite": flite}


# ------------------------------------------------------------------------------------------------ rendering


def _command(job: Job) -> tuple[list[str], str | None]:
    s = job.speaker
    if s.engine == "espeak-ng":
        return [job.binary, "-v", f"{s.voice}+{s.variant}", "-s", str(round(job.rate)), "-p",
                str(round(job.pitch)), "-a", str(ESPEAK_AMPLITUDE), "--stdout", "--stdin"], job.sentence.prompt
    cmd = [job.binary, "-voice", s.voice, "--setf", f"duration_stretch={job.rate:.3f}"]
    if job.pitch > 0:
        cmd += ["--setf", f"int_f0_target_mean={job.pitch:.1f}"]
    return cmd + ["-t", job.sentence.prompt, "-o", "/dev/stdout"], None


def render(job: Job) -> np.ndarray:
    """Synthesize, resample to 16 kHz, trim, set the level, pad with silence and add the noise floor."""
    cmd, stdin = _command(job)
    raw = _run(cmd, stdin)
    try:
        wave, sr = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except Exception as exc:
        raise SynthesisError(f"`{' '.join(cmd)}` wrote no readable WAV ({exc}); check that the engine works") from exc
    wave = wave.mean(axis=1)
    if sr != SAMPLE_RATE:
        g = gcd(sr, SAMPLE_RATE)
        wave = resample_poly(wave, SAMPLE_RATE // g, sr // g).astype(np.float32)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak <= 0.0:
        raise SynthesisError(f"`{' '.join(cmd)}` produced silence for utterance {job.id}")
    loud = np.flatnonzero(np.abs(wave) > peak * 10 ** (-45 / 20))
    margin = SAMPLE_RATE // 100
    wave = wave[max(0, loud[0] - margin): loud[-1] + margin]
    rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
    wave = wave * (10 ** ((-20.0 + job.gain_db) / 20) / rms)
    wave = np.concatenate([np.zeros(round(job.lead_s * SAMPLE_RATE), np.float32), wave,
                           np.zeros(round(job.trail_s * SAMPLE_RATE), np.float32)])
    noise = np.random.default_rng(job.noise_seed).standard_normal(wave.size)
    wave = wave + noise * 10 ** (job.noise_db / 20)
    peak = float(np.abs(wave).max())
    if peak > 0.95:  # a plain limiter: loud voices are scaled down rather than clipped
        wave = wave * (0.95 / peak)
    return wave.astype(np.float32)


def render_to_file(job: Job) -> int:
    wave = render(job)
    write_flac(job.path, wave, SAMPLE_RATE)
    return int(wave.size)
