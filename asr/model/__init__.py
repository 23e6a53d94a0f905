"""The model side, shared by training and inference: log-mel front-end (`features.py`), training-only
augmentation (`augment.py`), the acoustic model (`acoustic.py`), the one forward path (`forward.py`) and the one
objective (`ctc.py`: `compute_loss`)."""
