"""CTC speech recognition trainer: features, conv + BiLSTM acoustic model, CTC loss, greedy and beam decoding.

The Python API (asr.api), imported on first use so `import asr` stays light:

    import asr
    rec = asr.load("runs/demo")              # a run dir, a checkpoint, or an exported model
    print(rec.transcribe("talk.flac").text)
"""

__version__ = "0.1.0"
__all__ = ["load", "Recognizer", "Transcript"]


def __getattr__(name: str):
    if name in ("load", "Recognizer"):
        from asr import api

        return getattr(api, name)
    if name == "Transcript":
        from asr.inference.transcription import Transcript

        return Transcript
    raise AttributeError(f"module 'asr' has no attribute {name!r}")
