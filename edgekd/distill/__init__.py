"""Distillation: the loss registry (`edgekd.distill.losses`), feature taps, and the trainer."""
