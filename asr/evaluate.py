"""`asr-eval`: one checkpoint x subsets x decoders {greedy, beam, beam_lm} -> one WER/CER table.

    asr-eval checkpoint=runs/synthetic_small_adamw                      # best.pt of a run, greedy + beam
    asr-eval checkpoint=RUN corpus=librispeech beam.lm_path=data/lm/3-gram.arpa tune_lm=true
    asr-eval checkpoint=RUN corpus=null +manifests.mine=my.jsonl decoders=[greedy]   # "+": a new key

The acoustic model runs once per subset; its log-probs are cached on the CPU and every decoder (and every
point of the LM-weight grid) reads that cache, so adding a decoder costs decoding time only. Results: a table
on stdout, out_dir/<subset>/<decoder>.jsonl per-utterance records, out_dir/summary.json, and TensorBoard scalars
`<subset>/wer_<decoder>` beside the training curves when the checkpoint lies in a run dir.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from asr import hydra_cli, tb
from asr.config import ConfigError, to_object
from asr.data.manifest import read_manifest
from asr.inference import (
    DECODERS,
    BeamConfig,
    CachedLogProbs,
    LoadedModel,
    build_decoder,
    cache_log_probs,
    load_model,
    resolve_checkpoint,
)
from asr.metrics import ErrorCounts, score

log = logging.getLogger("asr.evaluate")

# corpus -> (manifest folder under data_dir, default subsets)
DATASETS = {"synthetic": ("synthetic/manifests", ["dev", "test"]),
            "librispeech": ("LibriSpeech/manifests", ["dev-clean", "dev-other", "test-clean", "test-other"])}


@dataclass
class EvalConfig:
    checkpoint: Optional[str] = None  # required: a checkpoint .pt, or a run dir (its checkpoints/best.pt)
    average_last: int = 1  # N > 1: average the weights of the newest N rolling checkpoints beside it
    # Not `data`: configs/data/ is the training presets' config group, and Hydra reads `data=X` as choosing one.
    corpus: Optional[str] = "synthetic"  # "synthetic", "librispeech" or null (then only `manifests`)
    data_dir: str = "data"  # the folder holding synthetic/manifests/ and LibriSpeech/manifests/
    subsets: Optional[list[str]] = None  # subsets of `corpus`; null = dev, test (synthetic) or LibriSpeech dev/test
    manifests: dict[str, str] = field(default_factory=dict)  # more sets: name -> JSONL (CLI: +manifests.NAME=PATH)
    max_utterances: Optional[int] = None  # evaluate only the first N utterances of each set (quick looks)
    decoders: Optional[list[str]] = None  # from greedy, beam, beam_lm; null = greedy, beam (+ beam_lm with an LM)
    beam: BeamConfig = field(default_factory=BeamConfig)  # beam search and LM settings (beam, beam_lm)
    tune_lm: bool = False  # grid-search beam.lm_weight x beam.word_score on tune_subset, then use the best pair
    tune_subset: Optional[str] = None  # set to tune on; null = the first set whose name starts with "dev"
    lm_weight_grid: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 1.5, 2.0])  # tune_lm's LM weights
    word_score_grid: list[float] = field(default_factory=lambda: [-1.0, 0.0, 1.0, 2.0])  # tune_lm's word scores
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    batch_seconds: float = 300.0  # padded audio seconds per acoustic-model batch
    worst_n: int = 5  # print this many worst utterances per set (0 = none)
    out_dir: Optional[str] = None  # null = <run dir>/eval (or <checkpoint folder>/eval outside a run dir)
    tb: bool = True  # write <set>/wer_<decoder> and <set>/cer_<decoder> to the run's TensorBoard log
    progress: bool = True  # progress bars on stderr

    def __post_init__(self) -> None:
        if not self.checkpoint:
            raise ConfigError("checkpoint: required; pass checkpoint=PATH (a .pt file or a training run dir)")
        if self.average_last < 1:
            raise ConfigError(f"average_last: must be >= 1, got {self.average_last}")
        if self.corpus is not None and self.corpus not in DATASETS:
            raise ConfigError(f"corpus: {self.corpus!r} is not a known corpus; use {' or '.join(DATASETS)} or null")
        if self.corpus is None and self.subsets:
            raise ConfigError("subsets: need a corpus; set corpus=synthetic or corpus=librispeech, or use manifests")
        if self.max_utterances is not None and self.max_utterances < 1:
            raise ConfigError(f"max_utterances: must be >= 1 or null, got {self.max_utterances}")
        if self.decoders is None:
            self.decoders = ["greedy", "beam"] + (["beam_lm"] if self.beam.lm_path else [])
        bad = [d for d in self.decoders if d not in DECODERS]
        if bad or not self.decoders or len(set(self.decoders)) != len(self.decoders):
            raise ConfigError(f"decoders: {self.decoders} must be distinct names from {', '.join(DECODERS)}")
        if self.tune_lm:
            if not self.beam.lm_path:
                raise ConfigError("beam.lm_path: tune_lm=true needs a language model; set beam.lm_path=PATH")
            if not self.lm_weight_grid or not self.word_score_grid:
                raise ConfigError("lm_weight_grid/word_score_grid: tune_lm=true needs at least one value in each")
            if "beam_lm" not in self.decoders:
                self.decoders.append("beam_lm")  # the tuned pair is only used by beam_lm
        self.beam.validate("beam", self.decoders)
        if self.batch_seconds <= 0:
            raise ConfigError(f"batch_seconds: must be > 0, got {self.batch_seconds}")
        if self.worst_n < 0:
            raise ConfigError(f"worst_n: must be >= 0, got {self.worst_n}")


def resolve_sets(cfg: EvalConfig) -> dict[str, Path]:
    """Set name -> manifest path, data preset subsets first, then `manifests`; every file must exist."""
    sets: dict[str, Path] = {}
    if cfg.corpus is not None:
        folder, default = DATASETS[cfg.corpus]
        for name in cfg.subsets or default:
            sets[name] = Path(cfg.data_dir) / folder / f"{name}.jsonl"
    for name, path in cfg.manifests.items():
        if name in sets:
            raise ConfigError(f"manifests.{name}: the name is already a subset of corpus={cfg.corpus}; rename it")
        sets[name] = Path(path)
    if not sets:
        raise ConfigError("manifests: nothing to evaluate; set corpus=synthetic|librispeech or +manifests.NAME=PATH")
    for name, path in sets.items():
        if not path.is_file():
            key = f"manifests.{name}" if name in cfg.manifests else "subsets"
            hint = "prepare it with `asr-data` or pick subsets=[...]" if key == "subsets" else "check the path"
            raise ConfigError(f"{key}: manifest for {name!r} not found: {path}; {hint}")
    return sets


def _finite(x: float) -> Optional[float]:
    return x if math.isfinite(x) else None


def _counts_dict(c: ErrorCounts) -> dict[str, Any]:
    return {"substitutions": c.substitutions, "deletions": c.deletions, "insertions": c.insertions,
            "errors": c.errors, "ref": c.ref_words, "rate": _finite(c.wer)}


def score_decoder(cache: CachedLogProbs, hyps: list[str], seconds: float, out_file: Path) -> dict[str, Any]:
    """Score one decoder's hypotheses, write the per-utterance records, return the corpus numbers."""
    ids = [u.id for u in cache.utts]
    word, char, per_utt = score(ids, [u.text for u in cache.utts], hyps)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    records = []
    with out_file.open("w", encoding="utf-8") as f:
        for i, r in enumerate(per_utt):
            rec = {"id": r.id, "reference": r.reference, "hypothesis": r.hypothesis,
                   "ref_words": r.word.ref_words, "substitutions": r.word.substitutions,
                   "deletions": r.word.deletions, "insertions": r.word.insertions, "word_errors": r.word.errors,
                   "ref_chars": r.char.ref_words, "char_errors": r.char.errors, "missing": i in cache.missing}
            if i in cache.missing:
                rec["error"] = cache.missing[i]
            records.append(rec)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return {"wer": _finite(word.wer), "cer": _finite(char.wer), "word": _counts_dict(word),
            "char": _counts_dict(char), "decode_seconds": seconds,
            "rtf": seconds / cache.audio_seconds if cache.audio_seconds else None, "records": records}


def tune_lm(cfg: EvalConfig, loaded: LoadedModel, name: str, cache: CachedLogProbs, out_dir: Path) -> dict:
    """Grid search of (lm_weight, word_score) for beam_lm on cached log-probs; writes out_dir/tune_lm.json."""
    grid = []
    refs, ids = [u.text for u in cache.utts], [u.id for u in cache.utts]
    for w in cfg.lm_weight_grid:
        for s in cfg.word_score_grid:
            hyps, seconds = cache.decode(build_decoder("beam_lm", loaded, cfg.beam, lm_weight=w, word_score=s))
            word, char, _ = score(ids, refs, hyps)
            grid.append({"lm_weight": w, "word_score": s, "wer": _finite(word.wer), "cer": _finite(char.wer),
                         "word_errors": word.errors, "char_errors": char.errors, "decode_seconds": seconds})
    best = min(grid, key=lambda r: (r["word_errors"], r["char_errors"]))
    result = {"subset": name, "grid": grid, "best": {"lm_weight": best["lm_weight"], "word_score": best["word_score"],
                                                     "wer": best["wer"], "cer": best["cer"]}}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tune_lm.json").write_text(json.dumps(result, indent=1))
    return result


def _pct(x: Optional[float]) -> str:
    return "inf" if x is None else f"{100 * x:.2f}"


def _rtf(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.4f}" if x >= 1e-3 else f"{x:.1e}"


def _grid(header: list[str], rows: list[list[str]], groups: list[tuple[str, int]] = ()) -> str:
    """Plain-text table; `groups` (title, columns spanned) is an optional line above the header."""
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    line = lambda cells: "  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(cells, widths)))
    out = []
    if groups:
        col, parts = 0, []
        for title, span in groups:
            parts.append(title.center(sum(widths[col:col + span]) + 2 * (span - 1), "-" if title else " "))
            col += span
        out.append("  ".join(parts))
    out += [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
    return "\n".join(out)


def format_table(results: dict[str, dict], decoders: list[str]) -> str:
    """One table: a row per set; per decoder WER %, CER %, S/D/I word errors and real-time factor."""
    header = ["set", "utts", "missing", "words", "AM RTF"] + ["WER%", "CER%", "S/D/I", "RTF"] * len(decoders)
    rows = []
    for name, r in results.items():
        any_dec = next(iter(r["decoders"].values()))
        row = [name, str(r["utterances"]), str(r["missing"]) + ("*" if r["missing"] else ""),
               str(any_dec["word"]["ref"]), _rtf(r["acoustic_rtf"])]
        for d in decoders:
            x = r["decoders"][d]
            w = x["word"]
            row += [_pct(x["wer"]), _pct(x["cer"]), f"{w['substitutions']}/{w['deletions']}/{w['insertions']}",
                    _rtf(x["rtf"])]
        rows.append(row)
    text = _grid(header, rows, [("", 5)] + [(f" {d} ", 4) for d in decoders])
    if any(r["missing"] for r in results.values()):
        text += ("\n* utterances whose audio is missing or unreadable: scored with an empty hypothesis "
                 "(their words count as deletions); see `missing` in the records")
    return text


def format_worst(results: dict[str, dict], n: int) -> str:
    """The n utterances with the most word errors per set, for the set's most accurate decoder."""
    out = []
    for name, r in results.items():
        dec = min(r["decoders"], key=lambda d: r["decoders"][d]["word"]["errors"])
        worst = sorted(r["decoders"][dec]["records"], key=lambda x: (-x["word_errors"], x["id"]))[:n]
        out.append(f"worst {len(worst)} of {name} ({dec}):")
        for x in worst:
            flag = "  [missing audio]" if x["missing"] else ""
            out += [f"  {x['id']}: {x['word_errors']} word errors / {x['ref_words']} words{flag}",
                    f"    REF: {x['reference']}", f"    HYP: {x['hypothesis']}"]
    return "\n".join(out)


def format_tuning(t: dict) -> str:
    """WER % on the tuning set: a row per LM weight, a column per word score."""
    scores = sorted({g["word_score"] for g in t["grid"]})
    weights = sorted({g["lm_weight"] for g in t["grid"]})
    cell = {(g["lm_weight"], g["word_score"]): _pct(g["wer"]) for g in t["grid"]}
    rows = [[f"{w:g}"] + [cell[(w, s)] for s in scores] for w in weights]
    b = t["best"]
    return (f"tune_lm on {t['subset']}: WER % (rows lm_weight, columns word_score)\n"
            + _grid(["lm_weight"] + [f"{s:g}" for s in scores], rows)
            + f"\nbest: lm_weight={b['lm_weight']:g} word_score={b['word_score']:g} (WER {_pct(b['wer'])}%)")


def _write_tb(loaded: LoadedModel, results: dict[str, dict]) -> Optional[Path]:
    if loaded.run_dir is None:
        return None
    writer = tb.open_writer(loaded.run_dir, True)
    for name, res in results.items():
        for dec, r in res["decoders"].items():
            vals = {tb.dev_tag(name, f"wer_{dec}"): r["wer"], tb.dev_tag(name, f"cer_{dec}"): r["cer"]}
            tb.scalars(writer, {k: v for k, v in vals.items() if v is not None}, loaded.step)
    writer.close()
    return loaded.run_dir / "tb"


def main(cfg: DictConfig | EvalConfig | dict) -> dict[str, Any]:
    """Evaluate; prints the table and worst utterances, writes records + summary.json; returns the summary."""
    cfg = to_object(cfg, EvalConfig)
    resolve_checkpoint(cfg.checkpoint)  # a wrong path is the likeliest mistake: report it first
    sets = resolve_sets(cfg)
    tune_name = cfg.tune_subset or next((n for n in sets if n.startswith("dev")), next(iter(sets)))
    if cfg.tune_lm and tune_name not in sets:
        raise ConfigError(f"tune_subset: {tune_name!r} is not an evaluated set ({', '.join(sets)}); add it to "
                          f"subsets or manifests")
    loaded = load_model(cfg.checkpoint, cfg.device, cfg.average_last)
    base = loaded.run_dir if loaded.run_dir is not None else loaded.path.parent
    out_dir = Path(cfg.out_dir) if cfg.out_dir else base / "eval"
    log.info("checkpoint %s (step %d) on %s; sets: %s; decoders: %s", loaded.path, loaded.step, loaded.device,
             ", ".join(sets), ", ".join(cfg.decoders))

    caches: dict[str, CachedLogProbs] = {}
    for name, path in sets.items():
        utts = read_manifest(path)[: cfg.max_utterances]
        caches[name] = cache_log_probs(loaded, utts, cfg.batch_seconds, f"model {name}", cfg.progress)

    tuning = None
    if cfg.tune_lm:
        tuning = tune_lm(cfg, loaded, tune_name, caches[tune_name], out_dir)
        cfg.beam.lm_weight, cfg.beam.word_score = tuning["best"]["lm_weight"], tuning["best"]["word_score"]
        print(format_tuning(tuning))

    decoders = {d: build_decoder(d, loaded, cfg.beam) for d in cfg.decoders}
    results: dict[str, dict] = {}
    for name, cache in caches.items():
        res = {"manifest": str(sets[name]), "utterances": len(cache.utts), "missing": len(cache.missing),
               "missing_ids": [cache.utts[i].id for i in sorted(cache.missing)][:100],
               "empty_references": sum(not u.text.strip() for u in cache.utts),
               "audio_seconds": cache.audio_seconds, "acoustic_seconds": cache.model_seconds,
               "acoustic_rtf": cache.model_seconds / cache.audio_seconds if cache.audio_seconds else None,
               "decoders": {}}
        for dec, fn in decoders.items():
            hyps, seconds = cache.decode(fn)
            res["decoders"][dec] = score_decoder(cache, hyps, seconds, out_dir / name / f"{dec}.jsonl")
        results[name] = res

    print(format_table(results, cfg.decoders))
    if cfg.worst_n:
        print(format_worst(results, cfg.worst_n))
    summary = {"checkpoint": str(loaded.path), "step": loaded.step, "averaged": [str(p) for p in loaded.averaged],
               "device": str(loaded.device), "decoders": cfg.decoders, "beam": asdict(cfg.beam), "tune_lm": tuning,
               "out_dir": str(out_dir),
               "sets": {n: {**r, "decoders": {d: {k: v for k, v in x.items() if k != "records"}
                                               for d, x in r["decoders"].items()}} for n, r in results.items()}}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "summary.txt").write_text(format_table(results, cfg.decoders) + "\n")
    if cfg.tb:
        summary["tb_dir"] = str(_write_tb(loaded, results)) if loaded.run_dir is not None else None
    print(f"records and summary.json in {out_dir}")
    return summary


def cli() -> None:
    """Hydra entry point (`asr-eval checkpoint=RUN_DIR corpus=librispeech decoders=[greedy,beam]`)."""
    hydra_cli.run("asr-eval", "eval", "eval_schema", EvalConfig, main)
