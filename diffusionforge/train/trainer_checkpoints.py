"""The Trainer's run folder: its config.json, the checkpoints it saves and the one it resumes
from (train/trainer.py holds the loop; train/checkpoint.py the folder format).

A mixin of `Trainer`: it reads the trainer's state (cfg, run_dir, acc, net, optimizer, ema,
dataset, formulation, step, sharded) and sets step, skipped and the last checkpoint saved.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import Tensor

from diffusionforge.errors import CheckpointError, ConfigError, TrainingDiverged
from diffusionforge.train import checkpoint as ckpt_io
from diffusionforge.train import resume_state, sharding
from diffusionforge.train.builders import build_model
from diffusionforge.train.config import to_dict


class Checkpoints:
    """Writing and resuming checkpoints, for `Trainer`."""

    def _check_writable(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise CheckpointError(
                f"{self.run_dir}: run folder is not writable ({e.strerror})"
            ) from None

    def _config_json(self) -> dict:
        n_params = sum(p.numel() for p in self.net.parameters())
        header = {
            "format": 1,
            "example_shape": list(self.dataset.shape),
            "parameters": n_params,
            "examples": len(self.dataset),
            "classes": self.dataset.classes if self.cfg.model.num_classes > 0 else [],
        }
        return {"diffusionforge": header, **to_dict(self.cfg)}

    def _load(self, resume: str) -> None:
        """Resume from a checkpoint. 'auto' tries the run's checkpoints newest first and skips,
        with one line each, every one whose files fail their checksum or whose content does
        not read back into this run (weights, optimizer, EMA, RNG or state of the wrong kind)."""
        if resume != "auto":
            ckpt = ckpt_io.resolve_checkpoint(resume, need_training_state=True)
            return self._restore(ckpt, resume_state.read(ckpt, self))
        differs = None  # a checkpoint of other settings: skipped only if an older one fits
        for path in reversed(ckpt_io.list_checkpoints(self.run_dir)):
            try:
                ckpt = ckpt_io.load_checkpoint(path, need_training_state=True)
                restored = resume_state.read(ckpt, self)
            except (CheckpointError, ConfigError) as e:
                differs = differs or (e if isinstance(e, ConfigError) else None)
                self.log(f"warning: skipping {e}")
                continue
            return self._restore(ckpt, restored)
        if differs is not None:  # never restart from 0 over checkpoints of other settings
            raise differs
        self.log(f"no checkpoint in {self.run_dir}; starting from step 0")

    def _restore(self, ckpt: ckpt_io.Checkpoint, r: resume_state.Restored) -> None:
        """Apply what `resume_state.read` checked; nothing here can fail half-way."""
        self.net.load_state_dict(r.model)
        if self.sharded:  # loaded into the shards once prepare() has made them
            self._pending_optimizer = r.optimizer
        else:
            self.optimizer.load_state_dict(r.optimizer)
        if self.ema is not None:
            self.ema.load_state(r.ema)
        ckpt_io.set_rng_state(r.rng)
        self.step, self.nan_streak, self.skipped = r.step, 0, r.skipped
        self.resumed_from = self._last_saved = ckpt.path
        self.log(f"resumed from {ckpt.path} at step {self.step}")

    def _save(self) -> Path | None:
        # Weights that are no longer finite (an optimizer step with a huge learning rate) are
        # never written: a checkpoint must always be a good one to resume or sample from.
        states = [self.net.state_dict(), *([self.ema.state()] if self.ema is not None else [])]
        finite = all(
            bool(torch.isfinite(sharding.local(t)).all()) for st in states for t in st.values()
        )
        if self.sharded:  # each process saw its own shards: all must agree
            flag = torch.tensor(float(finite), device=self.acc.device)
            finite = bool(self.acc.reduce(flag, reduction="sum") == self.world)
        if not finite:
            last = self._last_saved or "none was written"
            raise TrainingDiverged(
                f"training stopped at step {self.step}: the weights are no longer finite (try "
                f"a lower optim.lr); not saved; last good checkpoint: {last}"
            )
        self.acc.wait_for_everyone()
        full = self._full_states()  # every process takes part when the state is sharded
        path = None
        if self.acc.is_main_process:
            path = ckpt_io.save_checkpoint(
                self.run_dir, self.step, self._checkpoint_files(full), self.cfg.train.keep_last
            )
            self._last_saved = path
        self.acc.wait_for_everyone()
        return path

    def _full(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """Whole tensors of a state dict: gathered from the shards under FSDP (a collective:
        every process calls it; the result lands on the main process only), else as they are."""
        if not self.sharded:
            return tensors
        return sharding.full_tensors(tensors, keep=self.acc.is_main_process)

    def _full_states(self) -> dict[str, dict]:
        """Everything a checkpoint holds, whole (see `_full`)."""
        out = {"model": self._full(self.net.state_dict())}
        if self.sharded:
            out["optimizer"] = sharding.full_optimizer_state(
                self.optimizer, keep=self.acc.is_main_process
            )
        else:
            out["optimizer"] = self.optimizer.state_dict()
        if self.ema is not None:
            out["ema"] = self._full(self.ema.primary())
            out["ema_all"] = self._full(self.ema.state())
        return out

    def _checkpoint_files(self, full: dict[str, dict]) -> dict[str, bytes]:
        meta = {"step": self.step}
        files = {
            "model.safetensors": ckpt_io.tensors_to_bytes(full["model"], meta),
            "config.json": json.dumps(self._config_json(), indent=2).encode(),
            # files the model needs beside its weights (a text dataset's tokenizer.json)
            **getattr(self.dataset, "extra_files", {}),
        }
        opt_tensors, opt_meta = ckpt_io.optimizer_to_files(full["optimizer"])
        files["training_state/optimizer.safetensors"] = ckpt_io.tensors_to_bytes(opt_tensors)
        files["training_state/optimizer.json"] = json.dumps(opt_meta).encode()
        files["training_state/rng.safetensors"] = ckpt_io.tensors_to_bytes(ckpt_io.rng_state())
        if self.ema is not None:
            files["ema.safetensors"] = ckpt_io.tensors_to_bytes(full["ema"], meta)
            files["training_state/ema_all.safetensors"] = ckpt_io.tensors_to_bytes(full["ema_all"])
        hook = getattr(self.formulation, "checkpoint_files", None)
        if hook is not None:  # files measured on the saved weights (an autoencoder's latent scale)
            net = build_model(self.cfg, self.dataset.shape).to(self.acc.device)
            net.load_state_dict(full["ema"] if self.ema else full["model"])
            files.update(hook(net, self.dataset))
        epoch, batch = divmod(self.step, self.batches_per_epoch)
        state = {
            "step": self.step,
            "epoch": epoch,
            "batch_in_epoch": batch,
            "skipped_steps": self.skipped,
            "world_size": self.world,
            "time": time.time(),
        }
        files["training_state/state.json"] = json.dumps(state, indent=1).encode()
        return files
