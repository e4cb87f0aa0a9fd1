"""The Trainer's device-side mode (the default on CUDA, see `Trainer._setup`): optimizer steps
that never wait for the device, even when a step must be skipped for a non-finite loss or
gradient, and the one wait per logging window that reads the losses and skip counters back.

A mixin of `Trainer`: it reads the trainer's optimizer, net, ema, step and log, and keeps the
skip counters (`_bad`, `_streak` on the device; skipped, nan_streak once read back).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class DeviceSteps:
    """Fused optimizer steps without host synchronisation, for `Trainer`."""

    def _fused_optimizer(self, on: bool) -> None:
        """The fused AdamW kernel (device-side mode) takes found_inf, so a skipped step never
        waits for the device; otherwise torch's default. Set after a resume, which brings the
        saved run's choice; the step counters move to the weights' device as fused wants."""
        for group in self.optimizer.param_groups:
            group["fused"], group["foreach"] = (True if on else None), None
        if on:
            for p, st in self.optimizer.state.items():
                if "step" in st:
                    st["step"] = st["step"].to(device=p.device, dtype=torch.float32)

    def _on_device(self, loss: Tensor, grad_norm: Tensor) -> Tensor:
        """`_train_step`'s update without waiting for the device (the default on CUDA): the
        fused AdamW skips the whole update on the device when found_inf = 1, as it does for
        torch's GradScaler (weights, moments and step count untouched), the EMA takes a step of
        weight 0, and the skip counters stay on the device until `_sync` at the next logging
        step, which is also when train.nan_limit is checked. Returns the loss, a tensor."""
        bad = (~(torch.isfinite(loss) & torch.isfinite(grad_norm))).float()
        inner = getattr(self.optimizer, "optimizer", self.optimizer)  # accelerate's wrapper
        inner.found_inf, inner.grad_scale = bad, None
        self.optimizer.step()
        inner.found_inf = None
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.net, self.step, scale=1 - bad)
        self._bad += bad
        self._streak = (self._streak + 1) * bad
        return loss.detach()

    def _sync(self, losses: list) -> list[float]:
        """The device-side mode's one wait per logging window: losses as numbers (those of
        skipped steps dropped), skipped steps and the streak of them read back."""
        pending = [x for x in losses if isinstance(x, Tensor)]
        if not pending:
            return losses
        values = torch.stack([*pending, self._bad, self._streak]).tolist()
        *values, bad, streak = values
        done = [x for x in losses if not isinstance(x, Tensor)]
        new = int(bad) - self.skipped
        if new:
            self.log(
                f"warning: {new} of steps {self.step - len(pending) + 1}-{self.step}: "
                f"non-finite loss or gradient; skipped"
            )
        self.skipped, self.nan_streak = int(bad), int(streak)
        return done + [v for v in values if math.isfinite(v)]
