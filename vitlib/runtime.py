"""Where a training run executes: processes (torchrun / DDP), precision (bf16 autocast), seeding
and torch.compile. vitlib.train imports these; they hold no training logic of their own."""
from __future__ import annotations

import os
import random
import time

import numpy as np
import torch

from vitlib.config import TrainParams


def bf16_supported(device: torch.device) -> bool:
    """Is bf16 autocast *fast* here? CUDA: Ampere or newer. CPU: AMX tiles (Sapphire Rapids+);
    without AMX, CPU bf16 runs but is usually slower than fp32, so `auto` leaves it off."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        try:
            return bool(amx()) if amx is not None else False
        except RuntimeError:
            return False
    return False


def resolve_bf16(setting, device: torch.device) -> bool:
    s = str(setting).lower()
    if s == "auto":
        return bf16_supported(device)
    return s == "true"


class Dist:
    """Rank / world size from torchrun's environment; a single process otherwise."""

    def __init__(self, device_pref: str = "auto"):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() if device_pref == "auto" else device_pref == "cuda"
        if use_cuda and not torch.cuda.is_available():
            raise ValueError("train_params.device is 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
        self.device = torch.device(f"cuda:{self.local_rank}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(self.device)
        self.enabled = self.world > 1
        if self.enabled and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if use_cuda else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Sum numbers over ranks (float64 so counts stay exact)."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def compile_or_eager(net: torch.nn.Module, model: torch.nn.Module, tp: TrainParams, device: torch.device,
                     bf16: bool, say) -> torch.nn.Module:
    """torch.compile(net), tried once on a zero batch of the training shape; eager if that fails
    (no C compiler, an unsupported platform). Evaluation keeps using the eager `model`."""
    compiled = torch.compile(net)
    cfg = model.config
    x = torch.zeros(tp.batch_size, cfg.in_channels, *cfg.image_hw, device=device)
    t0 = time.perf_counter()
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = compiled(x)
        (out["number"] if isinstance(out, dict) else out).float().sum().backward()
    except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
        say(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); training eagerly")
        return net
    model.zero_grad(set_to_none=True)
    say(f"torch.compile: ready in {time.perf_counter() - t0:.0f} s")
    return compiled
