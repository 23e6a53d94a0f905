"""Training: the loop (`loop.py`, `asr-train`), one step, validation, checkpoints and resume, the run directory,
signals, DDP plumbing, the optimizer and schedule, and the built parts of a run (`components.py`).

Nothing under `asr.inference`, `asr.export` or `asr.serve` imports this package (tests/test_architecture.py)."""
