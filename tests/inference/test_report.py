"""asr-eval's printed report: the per-word error statistics read right and rank by frequency."""
from __future__ import annotations

from asr.inference.report import format_error_stats
from asr.metrics import word_error_stats


def test_error_stats_list_the_most_frequent_first():
    stats = word_error_stats(["THE CAT SAT", "THE CAT", "THE CAT", "A DOG"], ["THE BAT SAT", "THE BAT", "A CAT", "DOG"])
    text = format_error_stats("dev", "greedy", stats, n=1)
    lines = text.splitlines()
    assert lines[0] == "most frequent word errors in dev (greedy):"
    assert "substitutions REF -> HYP (3 in all):" in lines[1] and lines[2].split() == ["2", "CAT", "->", "BAT"]
    assert "deletions (1 in all):" in lines[3] and lines[4].split() == ["1", "A"]
    assert "insertions (0 in all):" in lines[5] and len(lines) == 6
