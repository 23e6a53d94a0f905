"""Deployment: a trained checkpoint as a self-contained ONNX or TorchScript model (waveform in, log-probs out)
plus a JSON sidecar (vocabulary, sample rate, features), and the runtime that runs one without this project's
training code. `asr-export` writes them; `asr-transcribe backend=onnx` and `asr-serve model=...` run them."""
