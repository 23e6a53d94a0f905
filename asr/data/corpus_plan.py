"""The plan of the built-in corpus: which speakers (engine, voice, pitch, rate) read which sentences, with every
random choice drawn from the split's own seeded stream, so dev/test never move when the amount of training audio
changes. asr.data.synthetic renders the plan and writes the corpus; asr.data.tts renders one utterance.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from asr.data.sentences import Sentence
from asr.data.tts import Job, Speaker

ID_BASE = {"dev": 1001, "test": 2001, "train": 3001}  # speaker ids; dev/test ids never move with `minutes`
SPLIT_KEY = {"train": 1, "dev": 2, "test": 3}  # RNG stream per split
CHAPTER_UTTS = 40  # utterances per chapter folder (LibriSpeech chapters hold ~10-130)

# Speaking rates per speaker (jittered +-6% per utterance). At espeak-ng's default 175 wpm (and flite's own
# tempo) the engines read ~19-20 characters/s of speech, and the fastest utterances left a 4x-subsampled CTC
# model (the quick study's, DESIGN.md) no spare frames. With these ranges the demo corpus measures 12.5
# characters/s at the median, 18 at the 99th percentile (LibriSpeech read speech: ~15), and needs at most 90%
# of the frames such a model has.
ESPEAK_WPM = (125.0, 170.0)
FLITE_STRETCH = (1.0, 1.3)
ESPEAK_TEMPO = {"pedro": 1.12, "antonio": 1.12, "Andrea": 1.13, "anika": 1.13}  # measured, relative to m1
SECONDS_PER_WORD = {"espeak-ng": 0.31, "flite": 0.33}  # at nominal rate, trimmed; only to plan the amounts


def _deal(items, n: int, rng: np.random.Generator) -> list:
    """n items, dealt from successive shuffles of `items`: each is used once before any is used twice."""
    items = list(items)
    out: list = []
    while len(out) < n:
        out += [items[i] for i in rng.permutation(len(items))]
    return out[:n]


def _draw_speakers(split: str, n: int, engines: dict, flite_share: float,
                   rng: np.random.Generator) -> list[Speaker]:
    n_flite = round(n * flite_share)
    if n >= 2:  # both engines in every split
        n_flite = min(max(n_flite, 1), n - 1)
    kinds = _deal(["flite"] * n_flite + ["espeak-ng"] * (n - n_flite), n, rng)
    n_espeak = n - n_flite
    # Variants (timbres) and accents are dealt separately, so every variant is heard before any repeats.
    espeak = list(zip(_deal(engines["accents"], n_espeak, rng), _deal(engines["variants"][split], n_espeak, rng)))
    flite = _deal(engines["flite"], n_flite, rng)
    speakers = []
    for i, kind in enumerate(kinds):
        sid = str(ID_BASE[split] + i)
        if kind == "espeak-ng":
            accent, variant = espeak.pop(0)
            wpm = rng.uniform(*ESPEAK_WPM) / ESPEAK_TEMPO.get(variant, 1.0)
            speakers.append(Speaker(sid, split, kind, accent, variant, pitch=round(rng.uniform(30, 70), 1),
                                    rate=round(wpm, 1)))
        else:
            voice = flite.pop(0)
            speakers.append(Speaker(sid, split, kind, voice, "",
                                    pitch=round(engines["flite"][voice] * rng.uniform(0.82, 1.22), 1),
                                    rate=round(rng.uniform(*FLITE_STRETCH), 3)))
    return speakers


def _estimate(sentence: Sentence, engine: str, rate: float) -> float:
    factor = 175.0 / rate if engine == "espeak-ng" else rate
    return len(sentence.text.split()) * SECONDS_PER_WORD[engine] * factor


def plan_split(split: str, minutes: float, n_speakers: int, pool: list[Sentence], engines: dict,
               flite_share: float, seed: int, folder: Path) -> list[Job]:
    """Speakers and utterances of one split, every random choice drawn here from the split's own stream.

    Each speaker reads sentences from the split's pool (a seeded shuffle, reshuffled when used up) until its
    share of `minutes` is reached, by an estimate from the word count and speaking rate.
    """
    rng = np.random.default_rng([seed, SPLIT_KEY[split]])
    speakers = _draw_speakers(split, n_speakers, engines, flite_share, rng)
    order, cursor = rng.permutation(len(pool)), 0
    share = minutes * 60.0 / n_speakers
    jobs: list[Job] = []
    for spk in speakers:
        planned, k = 0.0, 0
        while planned < share:
            if cursor == len(order):
                order, cursor = rng.permutation(len(pool)), 0
            sentence = pool[order[cursor]]
            cursor += 1
            jit_rate, jit_pitch = rng.uniform(0.94, 1.06), rng.uniform(-1.0, 1.0)
            if spk.engine == "espeak-ng":
                pitch = float(np.clip(spk.pitch + 4.0 * jit_pitch, 0, 99))
            else:
                pitch = spk.pitch * (1.0 + 0.04 * jit_pitch)
            lead, trail = rng.uniform(0.05, 0.4, size=2)
            chapter = int(spk.id) * 100 + k // CHAPTER_UTTS
            uid = f"{spk.id}-{chapter}-{k % CHAPTER_UTTS:04d}"
            jobs.append(Job(id=uid, path=str(folder / spk.id / str(chapter) / f"{uid}.flac"), speaker=spk,
                            sentence=sentence, pitch=round(pitch, 2), rate=round(spk.rate * jit_rate, 3),
                            gain_db=round(rng.uniform(-6.0, 3.0), 2), lead_s=round(lead, 3),
                            trail_s=round(trail, 3), noise_db=round(rng.uniform(-72.0, -58.0), 1),
                            noise_seed=int(rng.integers(2 ** 62)), binary=engines["binaries"][spk.engine]))
            planned += _estimate(sentence, spk.engine, jobs[-1].rate) + lead + trail
            k += 1
    return jobs
