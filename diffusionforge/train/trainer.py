"""The training loop on HuggingFace accelerate. Reads top to bottom: set-up, resume, loop, save.

One process on CPU by default; `accelerate launch` runs the same code on many GPUs or nodes.
Every random draw is a function of (seed, step, shard) or (seed, epoch, index), never of
hidden RNG state, so a run stopped and resumed in a new process ends bitwise equal to an
uninterrupted one, and N processes see the same examples and noise as one process that
accumulates N micro-batches.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch import Tensor

from diffusionforge.data.arrays import ArrayDataset
from diffusionforge.data.augment import mix_seed
from diffusionforge.errors import CheckpointError, ConfigError, TrainingDiverged
from diffusionforge.plot import save_png
from diffusionforge.train import checkpoint as ckpt_io
from diffusionforge.train import resume_state, sharding
from diffusionforge.train.builders import (
    build_formulation,
    build_model,
    build_optimizer,
    lr_at,
)
from diffusionforge.train.config import Config, parse_duration, to_dict
from diffusionforge.train.datasets import build_dataset
from diffusionforge.train.ema import ClassicEMA, PowerEMA
from diffusionforge.train.previews import PREVIEWS

PLAIN_EVERY = 30.0  # seconds between plain progress lines when there is no progress bar


@dataclass
class TrainResult:
    step: int
    status: str  # "done", "stopped" (--until-step), "time" (budget), "interrupted" (signal)
    checkpoint: Path | None
    loss: float  # mean loss over the last logging window
    seconds: float
    skipped_steps: int


class Trainer:
    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path,
        *,
        resume: str | None = None,  # None, "auto" or a checkpoint path
        until_step: int | None = None,  # stop (with a checkpoint) after this step
        max_time: str | None = None,  # wall-clock budget of this invocation, e.g. "10m"
        max_cpu_time: str | None = None,  # CPU-time budget of this process (fair on a busy machine)
        dataset: ArrayDataset | None = None,
        formulation=None,
        log: Callable[[str], None] = print,
        device_side: bool | None = None,  # None: on CUDA without FSDP or fp16 (see _on_device)
    ):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.until_step = until_step
        budget = max_time or cfg.train.max_time
        self.max_seconds = parse_duration(budget) if budget else math.inf
        cpu_budget = max_cpu_time or cfg.train.max_cpu_time
        self.max_cpu_seconds = (
            parse_duration(cpu_budget, "--max-cpu-time") if cpu_budget else math.inf
        )
        self.dataset = dataset
        self.formulation = formulation
        self.log = log
        self.device_side = device_side
        self._signal: str | None = None

    # --- set-up -----------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.cfg = copy.deepcopy(self.cfg)  # num_classes is resolved below
        # With no GPU, say cpu=True so that `accelerate launch` processes join over gloo.
        has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
        # accelerate keeps its settings in a process-wide singleton; a second Trainer in the same
        # process (the demo, tests) may want another precision. The process group is kept.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.acc = Accelerator(mixed_precision=cfg.train.mixed_precision, cpu=not has_gpu)
        self.sharded = sharding.setup_fsdp(self.acc)  # FSDP2: weights and state in shards
        self.cuda = self.acc.device.type == "cuda"
        if self.cuda:  # TF32 matmuls and convolutions: ~8x float32 speed, 10-bit mantissa
            torch.backends.cuda.matmul.fp32_precision = "tf32"
            torch.backends.cudnn.conv.fp32_precision = "tf32"
            torch.backends.cudnn.benchmark = True  # fixed shapes: time the conv kernels once
        self._pending_optimizer: dict | None = None
        if cfg.train.threads > 0 and self.acc.device.type == "cpu":
            # Small models on few cores lose badly to thread contention (100x seen on 2 cores).
            torch.set_num_threads(cfg.train.threads)
        self.world = self.acc.num_processes
        micro_count = self.world * cfg.train.grad_accum
        if cfg.train.batch_size % micro_count:
            raise ConfigError(
                f"train.batch_size: {cfg.train.batch_size} does not split into {self.world} "
                f"processes x {cfg.train.grad_accum} accumulation steps"
            )
        self.micro = cfg.train.batch_size // micro_count
        self.dataset = self.dataset or build_dataset(cfg)
        self.batches_per_epoch = len(self.dataset) // cfg.train.batch_size
        if self.batches_per_epoch == 0:
            raise ConfigError(
                f"train.batch_size: {cfg.train.batch_size} is larger than the dataset "
                f"({len(self.dataset)} examples)"
            )
        if cfg.model.num_classes < 0:  # the data decides: its class count, 0 when unlabelled
            cfg.model.num_classes = self.dataset.num_classes
        if 0 < cfg.model.num_classes < self.dataset.num_classes:
            raise ConfigError(
                f"model.num_classes: {cfg.model.num_classes} is fewer than the data's "
                f"{self.dataset.num_classes} classes"
            )
        self.formulation = self.formulation or build_formulation(cfg)
        self.net = build_model(cfg, self.dataset.shape)
        # A convolutional network reads NHWC faster on CUDA tensor cores (bf16/TF32 kernels).
        self.channels_last = self.cuda and cfg.model.kind == "unet"
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(cfg, self.net.parameters())
        if self.device_side is None:
            self.device_side = (
                self.cuda and not self.sharded and cfg.train.mixed_precision != "fp16"
            )
        if self.device_side:
            self._bad = torch.zeros((), device=self.acc.device)  # skipped steps, on the device
            self._streak = torch.zeros((), device=self.acc.device)  # ... in a row
        self.ema = {
            "none": lambda: None,
            "classic": lambda: ClassicEMA(self.net, cfg.ema.decay),
            "power": lambda: PowerEMA(self.net, cfg.ema.stds),
        }[cfg.ema.kind]()
        self.step, self.nan_streak, self.skipped = 0, 0, 0
        self.resumed_from: Path | None = None
        self._last_saved: Path | None = None
        if self.acc.is_main_process:
            self._check_writable()
            config = (json.dumps(self._config_json(), indent=2) + "\n").encode()
            try:
                ckpt_io.write_file(self.run_dir / "config.json", config)
            except OSError as e:
                raise CheckpointError(
                    f"{self.run_dir / 'config.json'}: could not write ({ckpt_io.describe(e)})"
                ) from None
        if self.resume:
            self._load(self.resume)
        self._fused_optimizer(self.device_side)
        self.model, self.optimizer = self.acc.prepare(self.net, self.optimizer)
        if self.ema is not None:  # prepare() moved the weights; the averages follow them
            self.ema.to(self.acc.device)
        if self.sharded:  # fully_shard swapped the parameters for shards: state follows
            like = self.net.state_dict()
            if self.ema is not None:
                self.ema.map(lambda avg: sharding.shard_like(avg, like))
            if self._pending_optimizer is not None:
                full = self._pending_optimizer
                self.optimizer.load_state_dict(sharding.shard_optimizer_state(full, self.optimizer))
                self._pending_optimizer = None
            if self.acc.is_main_process:
                self.log(f"FSDP: {sharding.fsdp_units(self.net)} units over {self.world} processes")
        if cfg.train.compile:  # only the training forward/backward; self.net stays plain
            self.model = torch.compile(self.model)
        self._perm_epoch, self._perm = -1, None

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

    # --- resume -----------------------------------------------------------------------------

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

    # --- the loop ---------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        self._setup()
        cfg, acc = self.cfg, self.acc
        start, losses, status = time.monotonic(), [], "done"
        self._cpu_start = time.process_time()
        last_ckpt = self.resumed_from
        last_saved = self.step if self.resumed_from else -1  # same on every process
        writer = self._tensorboard()
        bar = self._progress_bar()
        old_handlers = self._install_signal_handlers()
        if acc.is_main_process:
            self.log(
                f"training {self.run_dir} from step {self.step} to {cfg.train.steps} "
                f"on {self.world} process(es), device {acc.device}"
            )
        try:
            while self.step < cfg.train.steps:
                loss, grad_norm, lr = self._train_step()
                if loss is not None:
                    losses.append(loss)
                bar.update(1)
                if self.device_side and self.step % cfg.train.log_every == 0:
                    losses, grad_norm = self._sync(losses), float(grad_norm)
                if self.step % cfg.train.log_every == 0 and losses:
                    mean = sum(losses[-cfg.train.log_every :]) / len(losses[-cfg.train.log_every :])
                    bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
                    self._plain_line(start, mean, lr)
                    if writer:
                        writer.add_scalar("train/loss", mean, self.step)
                        writer.add_scalar("train/lr", lr, self.step)
                        writer.add_scalar("train/grad_norm", grad_norm, self.step)
                if self.nan_streak >= cfg.train.nan_limit:
                    last_ckpt = self._save()
                    raise TrainingDiverged(
                        f"training stopped at step {self.step}: {self.nan_streak} non-finite "
                        f"losses in a row (try a lower optim.lr); last good weights in {last_ckpt}"
                    )
                if cfg.train.sample_every and self.step % cfg.train.sample_every == 0:
                    self._sample_grid(writer)
                if (
                    cfg.ema.kind == "power"
                    and cfg.ema.snapshot_every
                    and (self.step % cfg.ema.snapshot_every == 0)
                ):
                    averages = self._full(self.ema.state())  # every process: a collective
                    if acc.is_main_process:
                        self.ema.save_snapshot(self.run_dir / "phema", self.step, averages)
                stop = self._should_stop(start)
                if stop:
                    status = stop
                    break
                if cfg.train.ckpt_every and self.step % cfg.train.ckpt_every == 0:
                    last_ckpt, last_saved = self._save(), self.step
        finally:
            self._restore_signal_handlers(old_handlers)
            bar.close()
        if self.device_side:
            losses = self._sync(losses)
        if last_saved != self.step:
            last_ckpt = self._save()
        if status == "done" and cfg.train.sample_every and self.step % cfg.train.sample_every:
            self._sample_grid(writer)
        if writer:
            writer.close()
        window = losses[-cfg.train.log_every :]
        return TrainResult(
            step=self.step,
            status=status,
            checkpoint=last_ckpt,
            loss=sum(window) / len(window) if window else math.nan,
            seconds=time.monotonic() - start,
            skipped_steps=self.skipped,
        )

    def _train_step(self) -> tuple[float | None, float, float]:
        """One optimizer step over the global batch; returns (loss, grad norm, lr).
        A non-finite loss or gradient leaves weights, optimizer and EMA untouched."""
        cfg, acc = self.cfg, self.acc
        lr = lr_at(cfg, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        total = torch.zeros((), device=acc.device)
        for a in range(cfg.train.grad_accum):
            shard = acc.process_index * cfg.train.grad_accum + a  # global id of this micro-batch
            x, cond = self._micro_batch(shard)  # (micro, ...), labels / cond rows or None
            x = self._to_device(x)
            cond = None if cond is None else self._to_device(self._drop_cond(cond, shard))
            g = torch.Generator(device=acc.device).manual_seed(
                mix_seed(cfg.train.seed, self.step, shard)
            )
            sync = a == cfg.train.grad_accum - 1
            with acc.no_sync(self.model) if not sync else contextlib.nullcontext():
                # accelerate wraps the network's forward in autocast, except under FSDP2
                # (sharding.py keeps its inputs float32): autocast here. It lowers matmuls and
                # convolutions only; the formulation's sigma arithmetic stays float32.
                with acc.autocast() if self.sharded else contextlib.nullcontext():
                    loss = self.formulation.loss(self.model, x, cond, generator=g).mean()
                acc.backward(loss / cfg.train.grad_accum)
            total += loss.detach() / cfg.train.grad_accum
        mean_loss = acc.reduce(total, reduction="mean")
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        grad_norm = acc.clip_grad_norm_(self.model.parameters(), max_norm)
        self.step += 1
        if self.device_side:
            return self._on_device(mean_loss, grad_norm), grad_norm, lr
        mean_loss, grad_norm = mean_loss.item(), float(grad_norm)
        fp16 = cfg.train.mixed_precision == "fp16"  # fp16 overflow is the grad scaler's job
        if not math.isfinite(mean_loss) or (not fp16 and not math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            self.nan_streak += 1
            self.skipped += 1
            self.log(f"warning: step {self.step}: non-finite loss or gradient; step skipped")
            return None, grad_norm, lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.nan_streak = 0
        if self.ema is not None:
            self.ema.update(self.net, self.step)
        return mean_loss, grad_norm, lr

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

    def _to_device(self, t: Tensor) -> Tensor:
        """CPU batch -> device: through pinned memory without waiting on CUDA (the copy is
        ordered before the kernels that read it), channels-last for a UNet's images."""
        if not self.cuda:
            return t.to(self.acc.device)
        t = t.pin_memory().to(self.acc.device, non_blocking=True)
        if self.channels_last and t.dim() == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def _drop_cond(self, cond: Tensor, shard: int) -> Tensor:
        """Replace each example's condition by the null one (the label num_classes, or the
        dataset's null_cond such as the empty caption) with probability train.label_dropout,
        drawn from (seed, step, shard): resume stays exact."""
        p = self.cfg.train.label_dropout
        if p <= 0:
            return cond
        g = torch.Generator().manual_seed(mix_seed(self.cfg.train.seed, self.step, shard, 0xD209))
        drop = torch.rand(cond.shape[0], generator=g) < p
        if self.dataset.cond is None:  # class labels (B,)
            return torch.where(drop, torch.full_like(cond, self.cfg.model.num_classes), cond)
        null = self.dataset.null_cond.to(cond.dtype).expand_as(cond)
        return torch.where(drop.view(-1, *[1] * (cond.dim() - 1)), null, cond)

    def _micro_batch(self, shard: int) -> tuple[Tensor, Tensor | None]:
        """Examples of micro-batch `shard` of the current step, and their labels when the model
        is class-conditional: a function of the step only."""
        cfg = self.cfg
        epoch, b = divmod(self.step, self.batches_per_epoch)
        if self._perm_epoch != epoch:
            n = len(self.dataset)
            self._perm = (
                torch.randperm(
                    n,
                    generator=torch.Generator().manual_seed(
                        mix_seed(cfg.train.seed, epoch, 0x5EED)
                    ),
                )
                if cfg.data.shuffle
                else torch.arange(n)
            )
            self._perm_epoch = epoch
        start = b * cfg.train.batch_size + shard * self.micro
        idx = self._perm[start : start + self.micro]
        x = self.dataset.batch(idx, epoch)
        if self.dataset.cond is not None:
            return x, self.dataset.cond[idx]
        labelled = self.dataset.labels is not None and cfg.model.num_classes > 0
        return x, self.dataset.labels[idx] if labelled else None

    def _should_stop(self, start: float) -> str | None:
        flags = [
            self._signal is not None,
            time.monotonic() - start > self.max_seconds
            or time.process_time() - self._cpu_start > self.max_cpu_seconds,
            self.until_step is not None and self.step >= self.until_step,  # same everywhere
        ]
        if self.world > 1 and self.device_side and self.step % 10:
            flags[:2] = False, False  # agreeing costs a wait for the device: every 10th step
        elif self.world > 1:  # every process must agree, or the next all-reduce would hang
            t = torch.tensor(flags, dtype=torch.float32, device=self.acc.device)
            flags = self.acc.reduce(t, reduction="sum").tolist()
        for flag, name in zip(flags, ("interrupted", "time", "stopped"), strict=True):
            if flag:
                return name
        return None

    # --- saving -----------------------------------------------------------------------------

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

    # --- logging and signals ----------------------------------------------------------------

    def _sample_grid(self, writer) -> Path | None:
        cfg = self.cfg
        preview = PREVIEWS.get(cfg.data.kind)
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
