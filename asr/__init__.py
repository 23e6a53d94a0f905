"""CTC speech recognition trainer: features, conv + BiLSTM acoustic model, CTC loss, greedy and beam decoding."""

__version__ = "0.1.0"
