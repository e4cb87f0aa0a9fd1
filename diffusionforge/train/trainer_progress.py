"""What a training run shows while it runs: the preview picture every train.sample_every steps,
TensorBoard, the progress bar or plain progress lines, and the signal handlers that turn
Ctrl-C / SIGTERM into a checkpoint and a clean stop (train/trainer.py holds the loop).

A mixin of `Trainer`: it reads the trainer's state (cfg, run_dir, acc, net, ema, dataset,
formulation, preview, step, log) and sets `_signal` when a signal arrives.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path

import torch

from diffusionforge.plot import save_png
from diffusionforge.train.builders import build_model

PLAIN_EVERY = 30.0  # seconds between plain progress lines when there is no progress bar


class Progress:
    """Previews, logs, progress and signals, for `Trainer`."""

    def _sample_grid(self, writer) -> Path | None:
        cfg = self.cfg
        preview = self.preview  # the modality's (modalities.py); None: no picture
        if preview is None:
            return None
        weights = self._full(self.ema.primary() if self.ema else self.net.state_dict())
        if not self.acc.is_main_process:
            return None
        net = build_model(cfg, self.dataset.shape).to(self.acc.device)
        net.load_state_dict(weights)
        net.eval()
        with torch.no_grad():
            image = preview(net, self.formulation, self.dataset, cfg, self.acc.device)
        if image is None:
            return None
        path = save_png(image, self.run_dir / "samples" / f"step-{self.step:09d}.png")
        if writer:
            import numpy as np

            writer.add_image("samples", np.asarray(image), self.step, dataformats="HWC")
        return path

    def _tensorboard(self):
        if not (self.cfg.train.tensorboard and self.acc.is_main_process):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def _plain_line(self, start: float, loss: float, lr: float) -> None:
        """Without a progress bar (--no-progress, or stderr not a terminal: a log file), one
        plain line at the first logged step and then at most every PLAIN_EVERY seconds."""
        if not self.acc.is_main_process:
            return
        if self.cfg.train.progress and sys.stderr.isatty():
            return
        now = time.monotonic()
        if now - getattr(self, "_plain_at", -math.inf) < PLAIN_EVERY:
            return
        if not hasattr(self, "_plain_from"):
            self._plain_from = (self.step, start)
        self._plain_at = now
        done, total = self.step - self._plain_from[0], self.cfg.train.steps
        rate = done / max(now - self._plain_from[1], 1e-9)
        eta = f", ETA {(total - self.step) / rate:.0f}s" if rate > 0 else ""
        self.log(f"step {self.step}/{total}  loss {loss:.4f}  lr {lr:.2e}  {rate:.2f} steps/s{eta}")

    def _progress_bar(self):
        from tqdm import tqdm

        return tqdm(
            total=self.cfg.train.steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=not (self.cfg.train.progress and self.acc.is_main_process),
        )

    def _install_signal_handlers(self) -> dict:
        def handler(signum, frame):
            if self._signal is not None:  # a second signal: stop now, without saving
                raise KeyboardInterrupt
            self._signal = signal.Signals(signum).name
            self.log(f"{self._signal} received: saving a checkpoint and stopping")

        old = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return old

    def _restore_signal_handlers(self, old: dict) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)
