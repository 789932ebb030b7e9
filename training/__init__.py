"""Training: the loop behind `train.py`, and the logs it writes (`training.history`)."""
