"""Training and inference speed of vitlib's ViT against torchvision's, timm's and the original's.

    python benchmarks/bench_train.py --config seed     # the original's model, 224 px, batch 64
    python benchmarks/bench_train.py --config default  # vitlib's CPU default, 32 px, batch 128
    python benchmarks/bench_train.py --config fine --models vitlib,vitlib-manual --compile
                                                       # 32 px in 4 px patches (65 tokens)

It first prints the CPU and the instruction sets bf16 speed depends on (AMX, AVX512-BF16, AVX2),
and, on a CPU, what `train_params.bf16: auto` chooses for vitlib at this shape (a fresh probe,
vitlib.runtime.resolve_precision, in eager mode, not cached).

All models live in one process and are timed in alternation (round r runs every model once),
several rounds; the table reports medians, so a burst of load from other programs hits all
models alike. A training step is forward + cross-entropy + backward + AdamW step; bf16 means
torch.autocast(bfloat16) around forward and loss, with fp32 weights (mixed precision).

Models at the same dimensions:
  original        a faithful re-implementation of the original code (benchmarks/original_vit.py)
  vitlib          vitlib.model.ViT with the chosen preset, fused attention (F.scaled_dot_product_attention)
  vitlib-manual   the same with the manual attention path (softmax(QK^T)V in two batched matmuls),
                  which `bf16: auto` picks where the fused bf16 backward is slow
  vitlib@tv       vitlib with torchvision's architecture (heads*head_dim == emb, qkv bias, no
                  patch LayerNorms) and torchvision's weights: the apples-to-apples line
  torchvision     torchvision.models.VisionTransformer(hidden_dim=emb_dim, same heads/layers/mlp)
  timm            timm's VisionTransformer, only when timm is installed

Columns: train img/s and infer img/s are wall-clock medians; train img/CPU-s divides by this
process's CPU time instead, which stays near the quiet-machine rate when other programs load
the machine (most useful with --threads 1). Peak memory: on CPU, the rise of the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs after gc + malloc_trim) over one training step; tracemalloc cannot see
PyTorch's allocations. On CUDA, torch.cuda.max_memory_allocated over one step.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

# Large activations are fresh allocations every step; backing them with 2 MB transparent huge
# pages instead of 4 KB pages removes most page faults (+5-10% on CPU). Must be set before torch
# allocates; THP_MEM_ALLOC_ENABLE=0 in the environment turns it off. See RESULTS.md.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))          # original_vit
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # vitlib without installing
from original_vit import OriginalViT  # noqa: E402

from vitlib.model import ViT, ViTConfig, flops_per_image  # noqa: E402
from vitlib.runtime import cpu_flags, cpu_model, resolve_precision  # noqa: E402

CONFIGS = {"seed": ViTConfig.original, "default": ViTConfig.default, "tiny": ViTConfig.tiny,
           "fine": lambda: replace(ViTConfig.default(), patch_size=4)}  # 8x8 grid, 65 tokens


def machine() -> str:
    """CPU model, the instruction sets bf16 speed depends on (of vitlib.runtime.CPU_FLAGS), cores, load."""
    flags = ", ".join(cpu_flags()) or "none of amx/avx512_bf16/avx2 reported"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " load average %.2f %.2f %.2f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    return f"{cpu_model() or platform.machine()} [{flags}], {cores} cores;{load}"


def auto_choice(cfg: ViTConfig, batch: int) -> str:
    """What `bf16: auto` picks for vitlib here: a fresh probe (a temporary cache, so an old entry
    in ~/.cache/vitlib cannot answer), which also prints the figures behind the choice."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        p = resolve_precision("auto", ViT(cfg), batch, torch.device("cpu"), cache=Path(tmp) / "p.json")
    return str(p)


# ------------------------------------------------------------------------------- memory
def _rss_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back so RSS is honest
    except OSError:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def peak_step_memory_mb(step, device: str) -> float | None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    if not os.path.exists("/proc/self/status") or not _reset_peak_rss():
        return None
    base = _rss_kb("VmRSS")
    step()
    return (_rss_kb("VmHWM") - base) / 1024


# ------------------------------------------------------------------------------- models
def original_params(cfg: ViTConfig) -> dict:
    (H, W), (ph, pw) = [(s, s) if isinstance(s, int) else s for s in (cfg.image_size, cfg.patch_size)]
    return dict(n_heads=cfg.n_heads, head_dim=cfg.attn_head_dim, emb_dim=cfg.emb_dim, ff_dim=cfg.mlp_dim,
                n_layers=cfg.n_layers, num_classes=cfg.num_classes, image_height=H, image_width=W,
                patch_height=ph, patch_width=pw, im_channels=cfg.in_channels, patch_emb_drop=0.0,
                attn_drop=0.0, ff_drop=0.0)


def build_models(cfg: ViTConfig, names: list[str]) -> dict[str, tuple[nn.Module, str]]:
    """name -> (model, one-line description of its dims)."""
    import torchvision

    D, L, M, hd = cfg.emb_dim, cfg.n_layers, cfg.mlp_dim, cfg.attn_head_dim
    tv_heads = cfg.n_heads  # torchvision needs heads * head_dim == hidden_dim: head_dim = D / heads
    dims = f"D{D} L{L} mlp{M}"
    out: dict[str, tuple[nn.Module, str]] = {}
    if "original" in names:
        out["original"] = (OriginalViT(original_params(cfg)), f"{dims} {cfg.n_heads}x{hd} heads")
    if "vitlib" in names:
        out["vitlib"] = (ViT(cfg), f"{dims} {cfg.n_heads}x{hd} heads")
    if "vitlib-manual" in names:
        out["vitlib-manual"] = (ViT(replace(cfg, fused_attn=False)), f"{dims} {cfg.n_heads}x{hd} heads")
    if "vitlib@tv" in names or "torchvision" in names:
        if not isinstance(cfg.image_size, int) or not isinstance(cfg.patch_size, int):
            raise ValueError("torchvision's ViT needs square images and patches")
        tv = torchvision.models.VisionTransformer(
            image_size=cfg.image_size, patch_size=cfg.patch_size, num_layers=L, num_heads=tv_heads,
            hidden_dim=D, mlp_dim=M, num_classes=cfg.num_classes)
        tv_dims = f"{dims} {tv_heads}x{D // tv_heads} heads"
        if "vitlib@tv" in names:
            out["vitlib@tv"] = (ViT.from_torchvision(tv), tv_dims)
        if "torchvision" in names:
            out["torchvision"] = (tv, tv_dims)
    if "timm" in names:
        try:
            from timm.models.vision_transformer import VisionTransformer as TimmViT
        except ImportError:
            print("timm is not installed: skipping its line (pip install timm to include it)")
        else:
            out["timm"] = (TimmViT(img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=D, depth=L,
                                   num_heads=tv_heads, mlp_ratio=M / D, qkv_bias=True,
                                   num_classes=cfg.num_classes), tv_dims)
    return out


def make_steps(model: nn.Module, cfg: ViTConfig, batch: int, dtype: str, device: str, compile_: bool):
    """(train_step, infer_step, 'compiled' | 'eager'). With compile_, torch.compile is tried on a
    first training step, and eager is used when no working compiler is found."""
    x = torch.randn(batch, cfg.in_channels, *cfg.image_hw, device=device)
    y = torch.randint(0, cfg.num_classes, (batch,), device=device)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    bf16 = dtype == "bf16"
    fwd = [torch.compile(model) if compile_ else model]

    def train_step():
        model.train()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(fwd[0](x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer_step():
        model.eval()
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            fwd[0](x)

    how = "eager"
    if compile_:
        try:
            train_step()
            how = "compiled"
        except Exception as e:  # inductor needs a C++ compiler (CPU) or triton (GPU)
            print(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); using eager")
            fwd[0] = model
    return train_step, infer_step, how


def timed(fn, steps: int, device: str) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) for `steps` calls."""
    if device == "cuda":
        torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="seed", choices=list(CONFIGS))
    ap.add_argument("--batch", type=int, default=None, help="default: 64 for seed (the original), 128 otherwise")
    ap.add_argument("--repeats", type=int, default=5, help="rounds over all models; medians reported")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per model per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--models", default="original,vitlib,vitlib-manual,vitlib@tv,torchvision,timm")
    ap.add_argument("--compile", action="store_true", help="also time vitlib(-manual) under torch.compile")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-infer", action="store_true", help="skip inference timing")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = CONFIGS[args.config]()
    batch = args.batch or (64 if args.config == "seed" else 128)
    print(f"machine: {machine()}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    print(f"config {args.config}: {cfg}")
    print(f"batch {batch}, {args.repeats} rounds x {args.steps} steps, ~{3 * flops_per_image(cfg) / 1e9:.2f} "
          f"GFLOP per training image (vitlib)")
    if args.device == "cpu":
        print(f"bf16: auto chooses {auto_choice(cfg, batch)} for vitlib here")
    print()

    torch.manual_seed(0)
    models = build_models(cfg, args.models.split(","))
    runs = {}  # (name, dtype) -> dict
    for name, (model, dims) in models.items():
        for dtype in args.dtypes.split(","):
            for comp in ([False, True] if args.compile and name.startswith("vitlib") and "@" not in name
                         else [False]):
                train, infer, how = make_steps(model, cfg, batch, dtype, args.device, comp)
                label = name + ("+compile" if comp else "")
                if comp and how != "compiled":
                    continue
                for _ in range(args.warmup):
                    train()
                    if not args.no_infer:
                        infer()
                runs[(label, dtype)] = dict(train=train, infer=infer, dims=dims, t=[], i=[], c=[],
                                            params=sum(p.numel() for p in model.parameters()))
    for r in range(args.repeats):
        for run in runs.values():
            wall, cpu = timed(run["train"], args.steps, args.device)
            run["t"].append(batch * args.steps / wall)
            run["c"].append(batch * args.steps / cpu)
            if not args.no_infer:
                run["i"].append(batch * args.steps / timed(run["infer"], args.steps, args.device)[0])
        print(f"round {r + 1}/{args.repeats} done", flush=True)
    for run in runs.values():
        run["mem"] = peak_step_memory_mb(run["train"], args.device)

    base = {d: statistics.median(runs[("original", d)]["t"]) for (n, d) in runs if n == "original"}
    print(f"\nmachine: {machine()}")
    print("| model | dims | params | dtype | train img/s | train img/CPU-s | infer img/s | train peak MB "
          "| train vs original fp32 |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for (label, dtype), run in runs.items():
        tr = statistics.median(run["t"])
        inf = f"{statistics.median(run['i']):.1f}" if run["i"] else "-"
        mem = "n/a" if run["mem"] is None else f"{run['mem']:.0f}"
        ratio = f"{tr / base['fp32']:.2f}x" if "fp32" in base else "-"
        cpu = statistics.median(run["c"])
        print(f"| {label} | {run['dims']} | {run['params']:,} | {dtype} | {tr:.1f} | {cpu:.1f} | {inf} | {mem} "
              f"| {ratio} |")


if __name__ == "__main__":
    main()
