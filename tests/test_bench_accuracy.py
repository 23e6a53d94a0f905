"""scripts/bench_accuracy.py: the peer's result file is read into our record format, and the table and plot are
written from records (the training runs themselves are the benchmark, not a test)."""
from __future__ import annotations

import json
from pathlib import Path

import bench_accuracy

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    return bench_accuracy


def test_peer_record_table_and_plot(tmp_path, monkeypatch):
    bench = load_bench()
    monkeypatch.setattr(bench, "corpus_fingerprint", lambda: "corpus-a")
    peer_dir = tmp_path / "peer_s3"
    peer_dir.mkdir()
    (peer_dir / "corpus.sha256").write_text("corpus-a")
    (peer_dir / "result.json").write_text(json.dumps({
        "optimizer_steps": 900, "epochs_completed": 2.5, "train_wall_s": 300.0, "param_count": 5_000_000,
        "dev_history": [{"epoch": 1, "elapsed_s": 150.0, "dev_WER": 90.0, "dev_CER": 40.0, "epoch_fraction": 1.0},
                        {"epoch": 2, "elapsed_s": 290.0, "dev_WER": 80.5, "dev_CER": 30.0, "epoch_fraction": 0.5}],
        "tests": {"test": {"WER": 79.25, "CER": 29.5, "utts": 10,
                           "hypotheses": "/elsewhere/peer_s3.running/hyp_test.tsv"}}}))  # written before the rename
    # Seen in training: THE, CAT. Greedy gets THE right and CAT wrong (seen 1 of 2 wrong), ZORP wrong (unseen 1/1).
    manifest = tmp_path / "train.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio_filepath": "a.flac", "duration": 1.0, "text": "the cat"}) + "\n")
    monkeypatch.setattr(bench, "TRAIN_MANIFEST", manifest)
    (peer_dir / "hyp_test.tsv").write_text("utt_id\tref\thyp\nu1\tTHE CAT ZORP\tTHE BAT ZAP\n")
    (peer_dir / "sb_lm_hyp_test.tsv").write_text("utt_id\tref\thyp\nu1\tTHE CAT ZORP\tTHE CAT <empty>\n")
    (peer_dir / "beam_lm.json").write_text(json.dumps({"best": {"alpha": 1.0, "beta": 2.0}, "tests": {"test": {
        "beam_lm_wer": 0.5, "beam_lm_cer": 0.25, "hypotheses": "/elsewhere/sb_lm_hyp_test.tsv"}}}))
    peer = bench.peer(3, None, tmp_path, "fp32")  # a finished run is read, not re-run
    assert peer["steps"] == 900 and peer["test"] == {
        "greedy": {"wer": 79.25, "cer": 29.5, "seen_wrong_pct": 50.0, "unseen_wrong_pct": 100.0},
        "beam_lm": {"wer": 50.0, "cer": 25.0, "alpha": 1.0, "beta": 2.0, "seen_wrong_pct": 0.0,
                    "unseen_wrong_pct": 100.0}}
    assert [p["wer"] for p in peer["curve"]] == [90.0, 80.5]
    assert [p["step"] for p in peer["curve"]] == [600, 900]  # 900 updates over 1.5 epochs: estimated
    ours = {"trainer": "ours", "seed": 3, "finished": "2026-12-01 00:00 UTC", "steps": 2000, "epochs": 7,
            "curve": [{"elapsed_s": 200.0, "epoch": 2, "wer": 70.0, "cer": 22.0}],
            "test": {"greedy": {"wer": 60.0, "cer": 19.0}, "beam": {"wer": 59.0, "cer": 18.5},
                     "beam_lm": {"wer": 35.0, "cer": 15.0}}}
    md = bench.table([ours, peer])
    row = ("| ours | 3 | 2026-12-01 00:00 UTC | 2000 | 7 | 70.00 | 60.00 / 19.00 | 59.00 / 18.50 | 35.00 / 15.00 | "
           "— | — |")
    assert row in md
    assert "| peer | 3 |" in md and "79.25 / 29.50 | — | 50.00 / 25.00 | 50.0 / 100.0 | 0.0 / 100.0 |" in md
    curves = bench.curve_table([ours, peer])
    assert "| ours | 3 | — | 200 | 2 | 70.00 | 22.00 |" in curves
    assert "| peer | 3 | ~900 | 290 | 2 | 80.50 | 30.00 |" in curves and curves.count("\n") == 1 + 1 + 2
    (peer_dir / "corpus.sha256").write_text("corpus-b")  # another corpus: the run is not reused
    assert not bench.reusable(peer_dir) and not peer_dir.exists()
    png = tmp_path / "curves.png"
    bench.plot([ours, peer], png, "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_only_peer_runs_that_side_and_writes_no_table(tmp_path, monkeypatch):
    bench = load_bench()
    ran = []
    monkeypatch.setattr(bench, "ours", lambda seed, *a: ran.append(("ours", seed)))
    monkeypatch.setattr(bench, "peer", lambda seed, *a: ran.append(("peer", seed)) or {})
    out = tmp_path / "docs" / "bench"
    fake = tmp_path / "exists.py"  # --peer and --peer-python must exist; nothing is run here
    fake.write_text("")
    bench.main(["--only", "peer", "--seeds", "1", "2", "--work", str(tmp_path / "work"), "--out", str(out),
                "--peer", str(fake), "--peer-python", str(fake)])
    assert ran == [("peer", 1), ("peer", 2)]
    assert not out.with_suffix(".md").exists()  # the table waits for the full call, which reuses these runs
