"""Runs pyctcdecode on saved log-probs, inside the benchmark's own virtualenv (pyctcdecode and kenlm are never
project dependencies): `python pyctcdecode_runner.py spec.json`; writes {"hyps": [...], "seconds": s}.
The clock covers decoding only (the decoder and its LM are built before it starts)."""
import json
import sys
import time

import numpy as np
from pyctcdecode import build_ctcdecoder


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    data = np.load(spec["emissions"])
    emissions = [data[f"arr_{i}"] for i in range(len(data.files))]
    decoder = build_ctcdecoder(spec["labels"], kenlm_model_path=spec["lm"], alpha=spec["alpha"], beta=spec["beta"])
    t0 = time.perf_counter()
    hyps = [decoder.decode(e, beam_width=spec["beam"]).strip() for e in emissions]
    seconds = time.perf_counter() - t0
    with open(spec["out"], "w") as f:
        json.dump({"hyps": hyps, "seconds": seconds}, f)


if __name__ == "__main__":
    main()
