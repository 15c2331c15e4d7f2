"""Where a training run executes: processes (torchrun / DDP), precision (bf16 autocast or fp32,
fused or manual attention: measured, see resolve_precision), seeding and torch.compile.
vitlib.train imports these; they hold no training logic of their own."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vitlib.config import TrainParams
from vitlib.model import ViTConfig, as_heads, set_fused_attention
from vitlib.paths import atomic_write_text


# ---------------------------------------------------------------------------- precision
# Whether bf16 autocast pays depends on the CPU, not its brand: AMX (Intel Sapphire Rapids+) and
# AVX512-BF16 (AMD Zen 4+, Cooper Lake) both speed it up, by amounts that depend on the model's
# shape; without either, bf16 only adds casts. Likewise PyTorch's fused attention backward in bf16
# is several times slower than the manual path on some CPUs and not on others. So `bf16: auto`
# times the run's own model in each candidate and keeps the fastest, once per machine and shape.

BF16_MIN_GAIN = 1.10   # bf16 rounds activations; below a 10 % gain that is not worth it (and is
                       # within what a few seconds of timing on a busy machine can resolve)
PROBE_SECONDS = 2.0    # time the candidates for about this long (after a warm-up step each) ...
PROBE_ROUNDS = (2, 10)  # ... in at least 2 and at most 10 interleaved rounds
CACHE_ENV = "VITLIB_CACHE_DIR"  # folder of precision.json; default ~/.cache/vitlib
CPU_FLAGS = ("amx_tile", "amx_bf16", "amx_fp16", "avx512_bf16", "avx512_fp16", "avx512f", "avx2",
             "bf16", "sve", "i8mm")  # x86 /proc/cpuinfo flags, then ARM "Features" that matter


@dataclass(frozen=True)
class Precision:
    """How a run trains: bf16 autocast or fp32, and which attention path its modules take."""
    bf16: bool
    fused_attn: bool

    @property
    def label(self) -> str:  # "bf16 manual": a column of the probe's figures
        return f"{'bf16' if self.bf16 else 'fp32'} {'fused' if self.fused_attn else 'manual'}"

    def __str__(self) -> str:  # "bf16 + manual attention": the choice, in words
        return f"{self.label.replace(' ', ' + ')} attention"


Timer = Callable[[Precision], float]  # seconds for one training step in that precision


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo ({} where there is none: macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    info: dict[str, str] = {}
    for k, v in pairs:
        info.setdefault(k.strip(), v.strip())
    return info


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Which of CPU_FLAGS this CPU reports (the instruction sets bf16 speed depends on)."""
    info = _cpuinfo()
    have = set((info.get("flags", "") + " " + info.get("Features", "")).split())
    return [f for f in CPU_FLAGS if f in have]


def machine_signature() -> dict:
    """What a cached decision is valid for: same CPU, same kernels (torch build and the ISA it
    dispatches to) and the same number of threads, which changes which kernels win."""
    return {"cpu": cpu_model(), "flags": cpu_flags(), "torch": torch.__version__,
            "isa": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}


def cache_file() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vitlib") / "precision.json"


def step_timer(model: nn.Module, batch_size: int, device: torch.device) -> Timer:
    """A Timer for a throwaway copy of `model` on a random batch of the run's shape: forward, loss,
    backward. No optimiser step: it costs the same in every candidate (the weights stay fp32).
    Eager mode, because compiling each candidate would take minutes. torch.compile speeds up
    every candidate, bf16 more than fp32 (benchmarks/RESULTS.md), so an eager win for bf16 holds
    when compiled; the error it can make is keeping fp32 where bf16 was narrowly faster."""
    probe = copy.deepcopy(model).train()
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, cfg.in_channels, *cfg.image_hw, generator=g).to(device)
    y = torch.randint(0, cfg.num_classes, (batch_size,), generator=g).to(device)

    def timer(p: Precision) -> float:
        set_fused_attention(probe, p.fused_attn)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=p.bf16):
            out = probe(x)
        heads = as_heads(out)
        others = [v for k, v in heads.items() if k != "number"]
        loss = F.cross_entropy(heads["number"].float(), y) + sum(v.float().mean() for v in others)
        loss.backward()
        probe.zero_grad(set_to_none=True)
        return time.perf_counter() - t0
    return timer


def measure(timer: Timer, candidates: list[Precision], batch_size: int) -> dict[Precision, float]:
    """Images per second of each candidate. Rounds interleave the candidates, so a burst of load
    from other programs hits all alike; each keeps its fastest step, as load only adds time."""
    times: dict[Precision, list[float]] = {}
    for p in candidates:  # warm-up: a first step builds kernels; a build may refuse CPU bf16
        try:
            timer(p)
            times[p] = []
        except RuntimeError:
            if not p.bf16:
                raise
    t0, lo, hi = time.perf_counter(), *PROBE_ROUNDS
    for r in range(hi):
        for p in times:
            times[p].append(timer(p))
        if r + 1 >= lo and time.perf_counter() - t0 > PROBE_SECONDS:
            break
    return {p: batch_size / min(ts) for p, ts in times.items()}


def pick(speeds: dict[Precision, float], fp32: Precision) -> Precision:
    """The fastest bf16 candidate if it beats fp32 by BF16_MIN_GAIN, else fp32."""
    bf16 = [p for p in speeds if p.bf16]
    best = max(bf16, key=speeds.__getitem__, default=None)
    return best if best is not None and speeds[best] >= BF16_MIN_GAIN * speeds[fp32] else fp32


def _load_cache(path: Path) -> dict:
    """The cache's entries; {} if it is missing or unreadable (it is rebuilt, never trusted)."""
    try:
        data = json.loads(path.read_text())
        return data["entries"] if data.get("format") == 1 and isinstance(data["entries"], dict) else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _valid(entry: Any) -> bool:
    """A cache entry this code can use (a hand-edited or older one is measured again)."""
    try:
        return isinstance(Precision(**entry["choice"]), Precision) and all(
            isinstance(v, (int, float)) for v in entry["img_per_s"].values())
    except (TypeError, KeyError, AttributeError):
        return False


def _save_cache(path: Path, entries: dict) -> str | None:
    """Write atomically (runs may start side by side); the error text if it cannot be written."""
    try:
        atomic_write_text(path, json.dumps({"format": 1, "entries": entries}, indent=1, sort_keys=True))
        return None
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def machine_busy() -> str | None:
    """Why timings taken now could mislead (other programs hold the cores: a step then measures
    waiting, which hurts the candidate with more small ops), else None. Busy probes are not cached."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return f"the machine was busy, load {load:.1f} on {cores} cores" if load > cores + 0.5 else None


def _probe(model: nn.Module, batch_size: int, device: torch.device, timer: Timer | None) -> dict:
    """Time the candidates and return the cache entry: the choice and the figures behind it."""
    fused = bool(model.config.fused_attn)  # fused_attn: false in a config rules the fused path out
    fp32 = Precision(False, fused)
    candidates = [fp32] + [Precision(True, f) for f in ((True, False) if fused else (False,))]
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # dropout in the probe must not shift the run's RNG
        speeds = measure(timer or step_timer(model, batch_size, device), candidates, batch_size)
    choice = pick(speeds, fp32)
    return {"choice": {"bf16": choice.bf16, "fused_attn": choice.fused_attn},
            "img_per_s": {p.label: round(v, 1) for p, v in speeds.items()},
            "seconds": round(time.perf_counter() - t0, 1), "measured": time.strftime("%Y-%m-%d %H:%M"),
            "busy": machine_busy(), "machine": machine_signature(), "batch_size": batch_size}


def _decide_on_cpu(model: nn.Module, batch_size: int, timer: Timer | None, path: Path) -> Precision:
    """The cached decision for this machine and model shape, else a fresh probe (cached unless
    the machine was busy); prints the one line with the figures behind it."""
    # The model's shape: what forward computes ("arch"), dropout ("train": extra work in training)
    # and fused_attn (which candidates there are); not pos_init_std, which only sets the start.
    cfg = model.config.to_dict()
    shape = {k: cfg[k] for k in ViTConfig.fields_of_kind("arch", "train") + ["fused_attn"]}
    key_fields = {"machine": machine_signature(), "model": shape, "batch_size": batch_size}
    key = hashlib.sha1(json.dumps(key_fields, sort_keys=True, default=str).encode()).hexdigest()[:16]
    entries = _load_cache(path)
    entry = entries.get(key)
    if _valid(entry):
        where = f"measured {entry.get('measured', '?')}, cached in {path}"
    else:
        entry = _probe(model, batch_size, torch.device("cpu"), timer)
        err = entry["busy"] or _save_cache(path, {**entries, key: entry})  # busy: the next run retries
        where = f"measured in {entry['seconds']:g} s, " + (f"not cached: {err}" if err else
                                                             f"cached in {path}")
    choice = Precision(**entry["choice"])
    speeds = sorted(entry["img_per_s"].items(), key=lambda kv: (kv[0][:4] != "fp32", kv[0]))  # fp32 first
    figures = ", ".join(f"{k} {v:,.0f}" + " img/s" * (i == 0) for i, (k, v) in enumerate(speeds))
    print(f"precision auto: {choice} ({figures}; {where})")
    return choice


def resolve_precision(setting: str | bool, model: nn.Module, batch_size: int, device: torch.device,
                      dist: Dist | None = None, timer: Timer | None = None,
                      cache: Path | None = None) -> Precision:
    """train_params.bf16 -> Precision. true/false are obeyed as they are, auto on CUDA is bf16
    where the GPU supports it (Ampere+); on those paths attention follows the config's fused_attn.
    auto on CPU is measured (_probe) once per machine and model shape and kept in cache_file().
    Under DDP rank 0 decides and every rank follows, so that all ranks train alike."""
    s = str(setting).lower()
    if s not in ("auto", "true", "false"):
        raise ValueError(f"train_params.bf16 = {setting!r}; choose auto, true or false")
    if dist is not None and dist.enabled:
        mine = resolve_precision(s, model, batch_size, device, None, timer, cache) if dist.main else None
        flags = dist.sum([float(mine.bf16), float(mine.fused_attn)] if mine else [0.0, 0.0])
        return Precision(bool(flags[0]), bool(flags[1]))
    if s == "auto" and device.type == "cpu":
        return _decide_on_cpu(model, batch_size, timer, cache or cache_file())
    cuda_bf16 = s == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    return Precision(s == "true" or cuda_bf16, bool(model.config.fused_attn))


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


@contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `n` inside the block (None: left as they are), and put back
    afterwards, so that a notebook or a test session keeps its own setting."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
        as_heads(out)["number"].float().sum().backward()
    except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
        say(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); training eagerly")
        return net
    model.zero_grad(set_to_none=True)
    say(f"torch.compile: ready in {time.perf_counter() - t0:.0f} s")
    return compiled
