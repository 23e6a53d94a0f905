"""`asr-eval`: one checkpoint x subsets x decoders {greedy, beam, beam_lm} -> one WER/CER table.

    asr-eval checkpoint=runs/synthetic_small_adamw                      # best.pt of a run, greedy + beam
    asr-eval checkpoint=RUN corpus=librispeech beam.lm_path=data/lm/3-gram.arpa tune_lm=true
    asr-eval checkpoint=RUN corpus=null +manifests.mine=my.jsonl decoders=[greedy]   # "+": a new key

The acoustic model runs once per subset; its log-probs are cached on the CPU and every decoder (and every
point of the LM-weight grid) reads that cache, so adding a decoder costs decoding time only. Results: a table
on stdout, out_dir/<subset>/<decoder>.jsonl per-utterance records, out_dir/summary.json, and TensorBoard scalars
`<subset>/wer_<decoder>` beside the training curves when the checkpoint lies in a run dir. The printed text
(table, worst utterances, per-word error statistics, LM grid) is asr/inference/report.py's.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from asr import hydra_cli, tb
from asr.config import DATASETS, ConfigError, EvalConfig, to_object
from asr.data.manifest import read_manifest
from asr.decoding import parallel
from asr.decoding import settings as decoding_settings
from asr.inference.loading import (
    CachedLogProbs,
    DecodeFn,
    LoadedModel,
    build_decoder,
    cache_log_probs,
    load_model,
    resolve_checkpoint,
    resolve_decoding,
)
from asr.inference.report import format_error_stats, format_seen_unseen, format_table, format_tuning, format_worst
from asr.metrics import ErrorCounts, score, seen_unseen, word_error_stats
from asr.text import normalize

log = logging.getLogger("asr.inference.evaluate")

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
            "errors": c.errors, "ref": c.ref_units, "rate": _finite(c.rate)}


def training_vocabulary(loaded: LoadedModel) -> Optional[set[str]]:
    """The words of the checkpoint's training transcripts (data.train_manifests, as the run named them), or None
    when a manifest is not where the run found it (then the seen/unseen split is not reported)."""
    words: set[str] = set()
    for path in loaded.config.data.train_manifests:
        if not Path(path).is_file():
            log.info("seen/unseen words: training manifest %s not found here; split not reported", path)
            return None
        for u in read_manifest(path):
            words.update(normalize(u.text).split())
    return words


def score_decoder(cache: CachedLogProbs, hyps: list[str], seconds: float, out_file: Path,
                  known: Optional[set[str]] = None) -> dict[str, Any]:
    """Score one decoder's hypotheses, write the per-utterance records, return the corpus numbers (with the
    seen/unseen split of the wrong words when the training vocabulary `known` is given)."""
    ids = [u.id for u in cache.utts]
    word, char, per_utt = score(ids, [u.text for u in cache.utts], hyps)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    records = []
    with out_file.open("w", encoding="utf-8") as f:
        for i, r in enumerate(per_utt):
            rec = {"id": r.id, "reference": r.reference, "hypothesis": r.hypothesis,
                   "ref_words": r.word.ref_units, "substitutions": r.word.substitutions,
                   "deletions": r.word.deletions, "insertions": r.word.insertions, "word_errors": r.word.errors,
                   "ref_chars": r.char.ref_units, "char_errors": r.char.errors, "missing": i in cache.missing}
            if i in cache.missing:
                rec["error"] = cache.missing[i]
            records.append(rec)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    split = None
    if known is not None:
        split = asdict(seen_unseen([r.reference for r in per_utt], [r.hypothesis for r in per_utt], known))
    return {"wer": _finite(word.rate), "cer": _finite(char.rate), "word": _counts_dict(word),
            "char": _counts_dict(char), "decode_seconds": seconds,
            "rtf": seconds / cache.audio_seconds if cache.audio_seconds else None, "seen_unseen": split,
            "records": records}


def tune_lm(cfg: EvalConfig, loaded: LoadedModel, name: str, cache: CachedLogProbs, out_dir: Path) -> dict:
    """Grid search of (lm_weight, word_score) for beam_lm on cached log-probs; writes out_dir/tune_lm.json."""
    grid = []
    refs, ids = [u.text for u in cache.utts], [u.id for u in cache.utts]
    for w in cfg.lm_weight_grid:
        for s in cfg.word_score_grid:
            hyps, seconds = cache.decode(build_decoder("beam_lm", loaded, cfg.beam, lm_weight=w, word_score=s))
            word, char, _ = score(ids, refs, hyps)
            grid.append({"lm_weight": w, "word_score": s, "wer": _finite(word.rate), "cer": _finite(char.rate),
                         "word_errors": word.errors, "char_errors": char.errors, "decode_seconds": seconds})
    best = min(grid, key=lambda r: (r["word_errors"], r["char_errors"]))
    result = {"subset": name, "grid": grid, "best": {"lm_weight": best["lm_weight"], "word_score": best["word_score"],
                                                     "wer": best["wer"], "cer": best["cer"]}}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tune_lm.json").write_text(json.dumps(result, indent=1))
    return result


def evaluate_set(cache: CachedLogProbs, manifest: Path, decoders: dict[str, DecodeFn], out_dir: Path,
                 known: Optional[set[str]] = None) -> dict:
    """Every decoder over one set's cached log-probs: its result dict (records in out_dir/<decoder>.jsonl)."""
    res = {"manifest": str(manifest), "utterances": len(cache.utts), "missing": len(cache.missing),
           "missing_ids": [cache.utts[i].id for i in sorted(cache.missing)][:100],
           "empty_references": sum(not u.text.strip() for u in cache.utts),
           "audio_seconds": cache.audio_seconds, "acoustic_seconds": cache.model_seconds,
           "acoustic_rtf": cache.model_seconds / cache.audio_seconds if cache.audio_seconds else None,
           "decoders": {}}
    for dec, fn in decoders.items():
        hyps, seconds = cache.decode(fn)
        res["decoders"][dec] = score_decoder(cache, hyps, seconds, out_dir / f"{dec}.jsonl", known)
    return res


def _write_tb(loaded: LoadedModel, results: dict[str, dict]) -> Optional[Path]:
    if loaded.run_dir is None:
        return None
    run = tb.eval_run(loaded.step)  # a run of its own: the training's curves stay whole (asr/tb.py)
    writer = tb.open_writer(loaded.run_dir, True, run)
    for name, res in results.items():
        for dec, r in res["decoders"].items():
            vals = {tb.dev_tag(name, f"wer_{dec}"): r["wer"], tb.dev_tag(name, f"cer_{dec}"): r["cer"]}
            tb.scalars(writer, {k: v for k, v in vals.items() if v is not None}, loaded.step)
    writer.close()
    return loaded.run_dir / "tb" / run


def main(cfg: DictConfig | EvalConfig | dict) -> dict[str, Any]:
    """Evaluate; prints the table and worst utterances, writes records + summary.json; returns the summary."""
    try:
        return _evaluate(to_object(cfg, EvalConfig))
    finally:
        parallel.shutdown()  # the beam.workers processes, if any


def _evaluate(cfg: EvalConfig) -> dict[str, Any]:
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

    if not cfg.tune_lm and "beam_lm" in cfg.decoders:  # weights left open: those tuned for this LM, if recorded
        cfg.beam = resolve_decoding(loaded, cfg.beam, cfg.decoders)
    # A broken LM fails now, in seconds, not after the whole acoustic pass: the beam_lm decoder is built first
    # (and used as it is unless tuning picks other weights).
    lm_decoder = build_decoder("beam_lm", loaded, cfg.beam) if "beam_lm" in cfg.decoders or cfg.tune_lm else None
    caches: dict[str, CachedLogProbs] = {}
    for name, path in sets.items():
        utts = read_manifest(path)[: cfg.max_utterances]
        caches[name] = cache_log_probs(loaded, utts, cfg.batch_seconds, f"model {name}", cfg.progress)

    tuning = None
    if cfg.tune_lm:
        tuning = tune_lm(cfg, loaded, tune_name, caches[tune_name], out_dir)
        cfg.beam.lm_weight, cfg.beam.word_score = tuning["best"]["lm_weight"], tuning["best"]["word_score"]
        print(format_tuning(tuning))
        best_wer = tuning["best"]["wer"]
        tuned_on = f"{tune_name} (WER {100 * best_wer:.2f} %)" if best_wer is not None else tune_name
        recorded = decoding_settings.record(loaded.path, cfg.beam, tuned_on)
        tuning["recorded"] = str(recorded)
        print(f"recorded the LM and these weights in {recorded}: asr-transcribe, asr-serve and asr-export use them "
              f"for beam_lm unless beam.* is given")
        lm_decoder = None  # built with the default weights; the tuned ones need their own

    decoders = {d: lm_decoder if d == "beam_lm" and lm_decoder is not None else build_decoder(d, loaded, cfg.beam)
                for d in cfg.decoders}
    known = training_vocabulary(loaded)
    results = {name: evaluate_set(cache, sets[name], decoders, out_dir / name, known)
               for name, cache in caches.items()}
    print(format_table(results, cfg.decoders))
    if known is not None:
        print(format_seen_unseen(results, cfg.decoders))
    if cfg.worst_n:
        print(format_worst(results, cfg.worst_n))
        for name, r in results.items():  # the set's most accurate decoder, as for the worst utterances
            dec = min(r["decoders"], key=lambda d: r["decoders"][d]["word"]["errors"])
            records = r["decoders"][dec]["records"]
            stats = word_error_stats([x["reference"] for x in records], [x["hypothesis"] for x in records])
            print(format_error_stats(name, dec, stats, cfg.worst_n))
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
