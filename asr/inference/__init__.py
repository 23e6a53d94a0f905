"""Inference: load a checkpoint or an export (`loading.py`), the one audio -> text pipeline (`transcription.py`),
what `audio=` may name (`audio_inputs.py`), transcript writers (`transcript_formats.py`), and the commands
`asr-eval` (`evaluate.py`, printing through `report.py`) and `asr-transcribe` (`transcribe.py`).

Nothing here imports `asr.train`; no module imports a command's module (`evaluate`, `transcribe`)."""
