"""Sharded training through accelerate's FSDP2 (torch's `fully_shard`), and the full tensors a
checkpoint needs from a sharded run.

`accelerate launch --use_fsdp --fsdp_version 2 ...` shards every parameter, gradient and
optimizer state over the processes; each network names its blocks in `_no_split_modules` (the
UNet's `Stage`, the DiT's `DiTBlock`, the text transformer's `Block`) and accelerate gives each
block its own FSDP unit, so only one block's full weights live on a device at a time.

Checkpoints stay what they are without sharding (one `model.safetensors`, one optimizer state
indexed like `optimizer.state_dict()`): every process takes part in gathering each tensor, the
main process writes the folder. So a sharded run's checkpoint samples in one process, resumes
in one process, and a one-process checkpoint resumes sharded; on resume each process reads the
full tensors and keeps its own shard (no communication).
"""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from torch import Tensor

from diffusionforge.errors import ConfigError


def setup_fsdp(acc: Accelerator) -> bool:
    """True when this run shards its model (launched with --use_fsdp on more than one process).

    accelerate 1.16 turns FSDP on only for accelerator devices (its state lists MULTI_GPU and
    kin, not MULTI_CPU); torch's fully_shard runs on CPU over gloo as well, so a CPU launch with
    --use_fsdp gets the same plugin accelerate would build from the same environment. That is
    the path the CPU tests take; on GPUs accelerate has done this itself."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return False
    state = acc.state
    if state.distributed_type == DistributedType.MULTI_CPU:
        plugin = FullyShardedDataParallelPlugin()
        if acc.mixed_precision != "no":
            plugin.set_mixed_precision(acc.mixed_precision)
        state.distributed_type, state.fsdp_plugin = DistributedType.FSDP, plugin
    if state.distributed_type != DistributedType.FSDP:
        return False  # one process: nothing to shard
    plugin = state.fsdp_plugin
    if plugin.fsdp_version != 2:
        raise ConfigError("FSDP: launch with --fsdp_version 2 (FSDP version 1 is not supported)")
    if acc.mixed_precision in ("bf16", "fp16"):
        # Low-precision weights for the blocks' compute, but gradients averaged in float32 and
        # the inputs left alone: accelerate's autocast casts them at each matmul, while the
        # noise level stays float32 up to the network's Fourier embedding (FSDP's default,
        # cast_forward_inputs, would round sigma to 8 bits before it).
        from torch.distributed.fsdp import MixedPrecisionPolicy

        low = torch.bfloat16 if acc.mixed_precision == "bf16" else torch.float16
        plugin.mixed_precision_policy = MixedPrecisionPolicy(
            param_dtype=low, reduce_dtype=torch.float32, cast_forward_inputs=False
        )
    if plugin.auto_wrap_policy is None and "FSDP_AUTO_WRAP_POLICY" not in os.environ:
        # Unset means per block (the network's _no_split_modules), not one unit for the whole
        # network; --fsdp_auto_wrap_policy NO_WRAP still asks for the latter.
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

        plugin.auto_wrap_policy = transformer_auto_wrap_policy
    return True


def fsdp_units(model: torch.nn.Module) -> int:
    """How many FSDP units the model was cut into (its blocks plus the root)."""
    from torch.distributed.fsdp import FSDPModule

    return sum(isinstance(m, FSDPModule) for m in model.modules())


def _is_shard(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def local(t: Tensor) -> Tensor:
    """This process' part of a tensor (the tensor itself when it is not sharded)."""
    return t.to_local() if _is_shard(t) else t


def full_tensors(tensors: dict[str, Tensor], keep: bool) -> dict[str, Tensor]:
    """Full CPU copies of a state dict whose entries may be shards. Every process must call it
    with the same dict (one all-gather per sharded tensor, in order); the result is kept only
    where `keep` (the main process), so only one full tensor at a time sits on each device.
    Gathered in sorted name order: dicts read from safetensors come in any order, and the
    processes must meet in the same one."""
    out = {}
    for name in sorted(tensors):
        t = tensors[name]
        full = t.full_tensor() if _is_shard(t) else t
        if keep:
            out[name] = full.detach().cpu()
    return {name: out[name] for name in tensors} if keep else out


def shard_like(full: dict[str, Tensor], like: dict[str, Tensor]) -> dict[str, Tensor]:
    """`full` (every process holds all of it) cut into the shards of `like`'s entries; entries
    that are not sharded in `like` stay whole. No communication."""
    return {k: _shard(v, like[k]) for k, v in full.items()}


def _shard(full: Tensor, like) -> Tensor:
    if not _is_shard(like):
        return full.to(like.device)
    from torch.distributed.tensor import distribute_tensor

    full = full.to(device=like.device, dtype=like.dtype)
    return distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None)


def full_optimizer_state(optimizer: torch.optim.Optimizer, keep: bool) -> dict:
    """The optimizer's `state_dict()` with every sharded state tensor gathered (see
    `full_tensors`); indexed by parameter position as without sharding."""
    sd = optimizer.state_dict()
    state = {}
    for idx in sorted(sd["state"]):
        entry = full_tensors(sd["state"][idx], keep)
        if keep:
            state[idx] = entry
    return {"state": state, "param_groups": sd["param_groups"]}


def shard_optimizer_state(full: dict, optimizer: torch.optim.Optimizer) -> dict:
    """A full optimizer state dict (as `full_optimizer_state` writes it) cut into the shards of
    the optimizer's sharded parameters, ready for `optimizer.load_state_dict`."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    state = {}
    for idx, entry in full["state"].items():
        p = params[idx]
        state[idx] = {
            k: _shard(v, p) if isinstance(v, Tensor) and v.dim() > 0 else v
            for k, v in entry.items()
        }
    return {"state": state, "param_groups": full["param_groups"]}
