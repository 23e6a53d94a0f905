"""Post-install check (run by scripts/setup.sh): each piece the project needs actually works, not just imports.

On the first failure it prints one line, `setup: broken: <piece>: <what happened>; fix: <what to do>`, and exits 1.
Takes about two seconds.
"""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
REINSTALL = "rm -rf .venv && bash scripts/setup.sh (installs requirements.lock exactly)"


def _locked_versions() -> dict[str, str]:
    """{name: version} of every requirement in requirements.lock that applies to this interpreter and platform
    (its environment marker, if any, evaluated here; a name may be locked twice under exclusive markers)."""
    from packaging.markers import Marker
    text = (ROOT / "requirements.lock").read_text()
    locked = {}
    for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^ ;\\\n]+)[ ]*(?:;([^\\\n]*))?", text, re.M):
        if m[3] is None or Marker(m[3].strip()).evaluate():
            locked[_canonical(m[1])] = m[2]
    return locked


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_versions() -> None:
    """Every locked distribution is installed at its locked version (a local build suffix, +cpu, aside)."""
    problems = []
    for name, want in sorted(_locked_versions().items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed (requirements.lock pins {want})")
            continue
        if have.split("+")[0] != want:
            problems.append(f"{name} {have} is installed but requirements.lock pins {want}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise RuntimeError("; ".join(problems[:3]) + more)


def check_torchaudio_extension() -> None:
    import torch
    import torchaudio.functional as F
    # forced_align runs in libtorchaudio: a torchaudio built against another torch fails here, not at import.
    log_probs = torch.log_softmax(torch.randn(1, 5, 3), dim=-1)
    F.forced_align(log_probs, torch.tensor([[1, 2]], dtype=torch.int32), blank=0)


def check_ctc_decoder() -> None:
    import torch
    from torchaudio.models.decoder import ctc_decoder
    decoder = ctc_decoder(lexicon=None, tokens=["-", "|", "A"], lm=None, beam_size=2, blank_token="-",
                          sil_token="|")
    decoder(torch.log_softmax(torch.randn(1, 4, 3), dim=-1))


def check_soundfile_flac() -> None:
    import numpy as np
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, np.zeros(1600, dtype=np.float32), 16000, format="FLAC", subtype="PCM_16")
    buf.seek(0)
    wave, rate = sf.read(buf)
    if rate != 16000 or len(wave) != 1600:
        raise RuntimeError(f"read back {len(wave)} samples at {rate} Hz, wrote 1600 at 16000")


def check_onnxruntime() -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    # asr-export / backend=onnx: build a one-node graph with onnx and run it (a broken wheel fails here).
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the lock could hold
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.array([-1.0, 2.0], dtype=np.float32)})[0]
    if out.tolist() != [0.0, 2.0]:
        raise RuntimeError(f"Relu([-1, 2]) gave {out.tolist()}")
    onnx.checker.check_model(model)


def check_tts() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for cmd in (["espeak-ng", "-w", f"{tmp}/e.wav", "a"], ["flite", "-t", "a", "-o", f"{tmp}/f.wav"]):
            if shutil.which(cmd[0]) is None:
                raise RuntimeError(f"{cmd[0]} is not on PATH")
            subprocess.run(cmd, capture_output=True, timeout=30, check=True)  # speaks one word into a file
    if not Path("/usr/share/wordnet/data.noun").is_file():
        raise RuntimeError("/usr/share/wordnet/data.noun is missing")


CHECKS: list[tuple[str, Callable[[], None], str]] = [
    ("package versions", check_versions, REINSTALL),
    ("torchaudio's extension (forced_align)", check_torchaudio_extension,
     f"torchaudio must match torch exactly; {REINSTALL}"),
    ("torchaudio ctc_decoder (flashlight-text)", check_ctc_decoder, REINSTALL),
    ("onnxruntime running an ONNX graph", check_onnxruntime, REINSTALL),
    ("soundfile reading FLAC (libsndfile)", check_soundfile_flac, "apt-get install libsndfile1, then " + REINSTALL),
    ("speech synthesis (espeak-ng, flite, wordnet-base)", check_tts,
     "apt-get install espeak-ng flite wordnet-base"),
]


def main() -> int:
    for piece, check, fix in CHECKS:
        try:
            check()
        except Exception as exc:  # any failure is reported the same way: one line, the piece, the fix
            detail = " ".join(str(exc).split()) or type(exc).__name__
            print(f"setup: broken: {piece}: {detail[:300]}; fix: {fix}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
