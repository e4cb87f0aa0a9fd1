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
from diffusionforge.train import auto_size, batches, sharding
from diffusionforge.train import checkpoint as ckpt_io
from diffusionforge.train.builders import (
    build_formulation,
    build_model,
    build_optimizer,
    lr_at,
)
from diffusionforge.train.config import Config, parse_duration
from diffusionforge.train.ema import ClassicEMA, PowerEMA
from diffusionforge.train.trainer_checkpoints import Checkpoints
from diffusionforge.train.trainer_device import DeviceSteps
from diffusionforge.train.trainer_progress import Progress


@dataclass
class TrainResult:
    step: int
    status: str  # "done", "stopped" (--until-step), "time" (budget), "interrupted" (signal)
    checkpoint: Path | None
    loss: float  # mean loss over the last logging window
    seconds: float
    skipped_steps: int


class Trainer(Checkpoints, DeviceSteps, Progress):
    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path,
        *,
        resume: str | None = None,  # None, "auto" or a checkpoint path
        until_step: int | None = None,  # stop (with a checkpoint) after this step
        max_time: str | None = None,  # wall-clock budget of this invocation, e.g. "10m"
        max_cpu_time: str | None = None,  # CPU-time budget of this process (fair on a busy machine)
        dataset: ArrayDataset | None = None,  # the examples, or else build_dataset(cfg) makes them
        build_dataset: Callable[[Config], ArrayDataset] | None = None,  # modalities.DATASETS'
        preview: Callable | None = None,  # the picture every train.sample_every steps (previews.py)
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
        if dataset is None and build_dataset is None:  # modalities.make_trainer gives both
            raise TypeError("Trainer: give dataset= or build_dataset=")
        self.dataset = dataset
        self.build_dataset = build_dataset
        self.preview = preview
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
        self.dataset = self.dataset or self.build_dataset(cfg)  # may pick data.image_size
        auto_size.batch_size(cfg, self.dataset.shape, len(self.dataset), self.world, self.log)
        micro_count = self.world * cfg.train.grad_accum
        if cfg.train.batch_size % micro_count:
            raise ConfigError(
                f"train.batch_size: {cfg.train.batch_size} does not split into {self.world} "
                f"processes x {cfg.train.grad_accum} accumulation steps"
            )
        self.micro = cfg.train.batch_size // micro_count
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
        order = batches.Order(
            len(self.dataset), cfg.train.batch_size, self.micro, cfg.train.seed, cfg.data.shuffle
        )
        shards = [
            self.acc.process_index * cfg.train.grad_accum + a for a in range(cfg.train.grad_accum)
        ]
        self._batches = batches.Batches(
            self.dataset, order, shards, cfg.train.steps, cfg.data.num_workers
        )

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
        first = self.step
        old_handlers = self._install_signal_handlers()
        if acc.is_main_process:
            self.log(
                f"training {self.run_dir} from step {self.step} to {cfg.train.steps} "
                f"on {self.world} process(es), device {acc.device}"
            )
        try:
            while self.step < cfg.train.steps:
                loss, grad_norm, lr = self._train_step()
                self._expected_time(first)
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
            self._batches.close()  # stops a streaming folder's worker processes
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
        x, idx = self._batches.get(self.step, shard)  # a function of (seed, step, shard)
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

    def _expected_time(self, first: int) -> None:
        """One line after a few steps: what the rest of the run costs (the first step, which
        allocates and warms up, is not timed)."""
        timed = auto_size.TIMED_STEPS
        if self.step == first + 1:
            self._timing = (time.process_time(), time.monotonic())
        elif self.step == first + 1 + timed < self.cfg.train.steps and self.acc.is_main_process:
            cpu, wall = time.process_time() - self._timing[0], time.monotonic() - self._timing[1]
            self.log(auto_size.expected_line(cpu, wall, timed, self.cfg.train.steps - self.step))
