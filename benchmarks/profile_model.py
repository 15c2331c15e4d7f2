"""Where does a training step's time go? torch.profiler over vitlib (and the original), by category.

    python benchmarks/profile_model.py --config seed --dtype bf16
    python benchmarks/profile_model.py --config default --dtype bf16 --batch 128 --top 15
    python benchmarks/profile_model.py --config default --dtype bf16 --attn fused   # the other path

Each aten op's self time is put in one bucket (attention matmuls and softmax, linear layers,
layer norms, GELU, layout copies and casts, optimizer, other elementwise), so the table answers
"what would be worth optimising". With --threads 1 (the default) the numbers are steadier on a
shared machine; `--model original` profiles the re-implementation of the original code instead.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch allocates: see RESULTS.md

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_train import original_params  # noqa: E402
from original_vit import OriginalViT  # noqa: E402

from vitlib.model import ViT, ViTConfig  # noqa: E402

BUCKETS = [  # (bucket, substrings of aten op names), first match wins
    ("attention: flash kernel", ("scaled_dot_product", "flash_attention")),
    ("attention: bmm (QK^T, PV)", ("aten::bmm", "aten::baddbmm")),
    ("attention: softmax", ("softmax",)),
    ("linear layers (mm/addmm)", ("aten::mm", "aten::addmm", "aten::linear")),
    ("layer norm", ("layer_norm",)),
    ("GELU", ("gelu",)),
    ("copies / casts / cat", ("aten::copy_", "aten::_to_copy", "aten::cat", "aten::clone", "aten::contiguous")),
    ("optimizer", ("_foreach", "_fused_adam", "lerp", "addcdiv", "addcmul", "sqrt")),
]


def bucket(name: str) -> str:
    for b, keys in BUCKETS:
        if any(k in name for k in keys):
            return b
    return "other (adds, muls, sums, loss, ...)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="seed", choices=["seed", "default", "tiny"])
    ap.add_argument("--model", default="vitlib", choices=["vitlib", "original"])
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--attn", choices=["fused", "manual"], default=None,
                    help="vitlib's attention path (default: manual in bf16, fused in fp32: the faster "
                         "ones on the AMX machine of RESULTS.md; `bf16: auto` measures it per machine)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--top", type=int, default=12, help="also print the top-N ops with shapes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = getattr(ViTConfig, "original" if args.config == "seed" else args.config)()  # seed.yaml's model
    batch = args.batch or (64 if args.config == "seed" else 128)
    attn = args.attn or ("manual" if args.dtype == "bf16" else "fused")
    if args.model == "vitlib":
        model = ViT(replace(cfg, fused_attn=attn == "fused"))
    else:
        model = OriginalViT(original_params(cfg))
    x, y = torch.randn(batch, cfg.in_channels, *cfg.image_hw), torch.randint(0, cfg.num_classes, (batch,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.top > 0) as prof:
        for _ in range(args.steps):
            step()
    events = prof.key_averages()
    totals: dict[str, float] = defaultdict(float)
    for e in events:
        if e.key.startswith("aten::"):
            totals[bucket(e.key)] += e.self_cpu_time_total
    all_ = sum(totals.values())
    ms_per_step = all_ / 1e3 / args.steps
    print(f"{args.model} {args.config} {args.dtype}" + (f" {attn} attention" if args.model == "vitlib" else "")
          + f" batch {batch}, {args.threads} thread(s): "
          f"{ms_per_step:.0f} ms of aten op time per step (profiler on) = {batch / ms_per_step * 1e3:.0f} img/s")
    print("| where | share | ms / step |\n|---|---:|---:|")
    for b, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {b} | {100 * t / all_:.1f}% | {t / 1e3 / args.steps:.1f} |")
    if args.top:
        print(f"\ntop {args.top} ops by self time, with input shapes:")
        rows = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
        for e in rows[:args.top]:
            print(f"  {e.key[:44]:44s} {e.self_cpu_time_total / 1e3 / args.steps:8.1f} ms  x{e.count // args.steps:<4d}"
                  f" {str(e.input_shapes)[:80]}")


if __name__ == "__main__":
    main()
