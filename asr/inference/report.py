"""What `asr-eval` prints: the WER/CER table, the worst utterances, the LM-weight grid and the per-word error
statistics (the most frequent substitutions, deletions and insertions: what the model confuses).

Plain functions from result dicts (as asr/inference/evaluate.py builds them) to text; nothing here decodes or scores.
"""
from __future__ import annotations

from typing import Optional

from asr.metrics import WordErrorStats


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
    text += ("\nS/D/I: words substituted / deleted / inserted against the reference; RTF: seconds of decoding per "
             "second of audio (AM RTF: the acoustic model's forward pass, shared by the decoders)")
    if any(r["missing"] for r in results.values()):
        text += ("\n* utterances whose audio is missing or unreadable: scored with an empty hypothesis "
                 "(their words count as deletions); see `missing` in the records")
    return text


def format_seen_unseen(results: dict[str, dict], decoders: list[str]) -> str:
    """Per set and decoder: % of reference words recognised wrongly among words seen in the training transcripts
    and among unseen ones (what a greedy model must spell, in characters or pieces, from sound alone)."""
    lines = ["words wrong, seen in the training transcripts / unseen (greedy decoding must spell unseen words, in "
             "characters or pieces, from sound alone):"]
    for name, r in results.items():
        split = next(iter(r["decoders"].values()))["seen_unseen"]
        total = split["seen_words"] + split["unseen_words"]
        cells = []
        for d in decoders:
            x = r["decoders"][d]["seen_unseen"]
            seen = x["seen_wrong"] / x["seen_words"] if x["seen_words"] else None
            unseen = x["unseen_wrong"] / x["unseen_words"] if x["unseen_words"] else None
            cells.append(f"{d} {_pct(seen) if seen is not None else '-'} / {_pct(unseen) if unseen is not None else '-'} %")
        lines.append(f"  {name} ({split['unseen_words']} of {total} words unseen, "
                     f"{_pct(split['unseen_words'] / max(total, 1))} %): " + "; ".join(cells))
    return "\n".join(lines)


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


def format_error_stats(name: str, decoder: str, stats: WordErrorStats, n: int) -> str:
    """The `n` most frequent substitutions (REF -> HYP), deletions and insertions of one set and decoder."""
    def column(title: str, counter, show) -> list[str]:
        items = sorted(counter.items(), key=lambda kv: (-kv[1], show(kv[0])))[:n]
        return [f"  {title} ({sum(counter.values())} in all):"] + [f"    {c:5d}  {show(k)}" for k, c in items]
    lines = [f"most frequent word errors in {name} ({decoder}):"]
    lines += column("substitutions REF -> HYP", stats.substitutions, lambda k: f"{k[0]} -> {k[1]}")
    lines += column("deletions", stats.deletions, str)
    lines += column("insertions", stats.insertions, str)
    return "\n".join(lines)
