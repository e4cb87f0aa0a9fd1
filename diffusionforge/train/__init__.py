"""Training: config dataclasses and presets, builders, the Trainer, EMA, checkpoint io."""
