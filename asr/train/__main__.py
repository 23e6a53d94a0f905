"""`python -m asr.train` / `torchrun ... -m asr.train`: the asr-train command (asr.train.loop)."""
from asr.train.loop import cli

cli()
