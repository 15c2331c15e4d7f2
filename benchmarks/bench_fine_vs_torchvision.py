"""Training speed of the fine model, vitlib's ViT(ViTConfig.fine()), against torchvision's ViT.

    python benchmarks/bench_fine_vs_torchvision.py                      # all cores, ~10-15 min on 2 cores
    python benchmarks/bench_fine_vs_torchvision.py --threads 2 --rounds 8 --steps 50 --json fine_vs_tv.json
    python benchmarks/bench_fine_vs_torchvision.py --quick --threads 1  # smoke test, a few steps

Both models at the same dimensions: 32 px images cut into 4x4 patches (N=64 patches + CLS),
D=128, L=6, h=4 (d=32), D_ff=256, 10 classes, qkv bias. vitlib also has its LayerNorm ->
Linear -> LayerNorm patch embedding (torchvision: one 4x4 convolution). A training step is
forward + cross-entropy + backward + AdamW step on a random batch (benchmarks/bench_train.py's
make_steps); bf16 means torch.autocast(bfloat16) with fp32 weights.

1. Selection: every candidate setting is timed in interleaved rounds (a burst of load from other
   programs hits all alike) and each model keeps its fastest by median images/s:
     vitlib       {fp32, bf16} x {eager, torch.compile} x {fused, manual attention}
     torchvision  {fp32, bf16} x {eager, torch.compile}  (its attention is always the fused kernel)
2. Comparison: the two chosen settings alternate for --rounds rounds of --steps steps (the order
   flips every round); the script prints each round, the medians and vitlib / torchvision
   (target >= 1.5x).
It also prints what vitlib.train's `bf16: auto` would choose here (a fresh eager probe,
vitlib.runtime.resolve_precision), for comparison with the selection's pick.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Large activations back onto 2 MB pages; must be set before torch allocates (see RESULTS.md).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))          # bench_train
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # vitlib without installing
from bench_train import auto_choice, machine, make_steps, timed  # noqa: E402

from vitlib.model import ViT, ViTConfig, set_fused_attention  # noqa: E402
from vitlib.runtime import cpu_model, num_threads  # noqa: E402

TARGET = 1.5  # vitlib / torchvision training images per second (issue 17)
FULL = dict(rounds=8, steps=50, warmup=3, select_rounds=3, select_steps=10)
QUICK = dict(rounds=2, steps=3, warmup=1, select_rounds=1, select_steps=2)
Step = Callable[[], None]


@dataclass(frozen=True)
class Candidate:
    """One way to run a model's training step."""
    model: str                  # "vitlib" | "torchvision"
    bf16: bool
    compiled: bool
    fused: bool | None = None   # vitlib's attention path; None for torchvision

    @property
    def label(self) -> str:  # "vitlib bf16 compile manual"
        attn = "" if self.fused is None else (" fused" if self.fused else " manual")
        return (f"{self.model} {'bf16' if self.bf16 else 'fp32'} "
                f"{'compile' if self.compiled else 'eager'}{attn}")


def candidates(compile_: bool) -> list[Candidate]:
    """Every setting the selection tries, vitlib's first."""
    comp = (False, True) if compile_ else (False,)
    vit = [Candidate("vitlib", b, c, f) for b in (False, True) for c in comp for f in (True, False)]
    return vit + [Candidate("torchvision", b, c) for b in (False, True) for c in comp]


def base_models(cfg: ViTConfig) -> dict[str, nn.Module]:
    """One freshly initialised model of each kind, at the fine model's dimensions."""
    import torchvision

    # torchvision's ViT takes square sizes only; ViTConfig.fine() has image_size=32, patch_size=4.
    tv = torchvision.models.VisionTransformer(
        image_size=cfg.image_size, patch_size=cfg.patch_size,
        num_layers=cfg.n_layers, num_heads=cfg.n_heads, hidden_dim=cfg.emb_dim, mlp_dim=cfg.mlp_dim,
        num_classes=cfg.num_classes)
    return {"vitlib": ViT(cfg), "torchvision": tv}


def prepare(cands: list[Candidate], cfg: ViTConfig, batch: int, warmup: int) -> dict[Candidate, Step]:
    """A warmed-up training step for each candidate, each on its own copy of the model (and its
    own AdamW), so compiled graphs and attention paths never share a module. A compiled candidate
    whose compiler fails, or a bf16 one this build refuses, is left out with a note."""
    base = base_models(cfg)
    steps: dict[Candidate, Step] = {}
    for c in cands:
        model = copy.deepcopy(base[c.model])
        if c.fused is not None:
            set_fused_attention(model, c.fused)
        t0 = time.perf_counter()
        try:
            train, _, how = make_steps(model, cfg, batch, "bf16" if c.bf16 else "fp32", "cpu", c.compiled)
            if c.compiled and how != "compiled":
                print(f"  {c.label}: left out (torch.compile failed; the eager line stands for it)")
                continue
            for _ in range(warmup):
                train()
        except RuntimeError as e:
            if not c.bf16:
                raise
            print(f"  {c.label}: left out (bf16 failed: {str(e).splitlines()[0][:100]})")
            continue
        print(f"  {c.label}: ready in {time.perf_counter() - t0:.1f} s", flush=True)
        steps[c] = train
    return steps


def interleaved(steps: dict[Candidate, Step], rounds: int, n: int, batch: int,
                say: Callable[[int, dict[Candidate, float]], None] | None = None
                ) -> dict[Candidate, list[float]]:
    """Images per second of each candidate in each round of `n` steps. Every round runs every
    candidate once, in reversed order every other round, so neither drift nor a candidate's
    position in the round favours one of them."""
    rates: dict[Candidate, list[float]] = {c: [] for c in steps}
    order = list(steps)
    for r in range(rounds):
        this_round = {}
        for c in (order if r % 2 == 0 else order[::-1]):
            wall, _ = timed(steps[c], n, "cpu")
            this_round[c] = batch * n / wall
            rates[c].append(this_round[c])
        if say:
            say(r, this_round)
    return rates


def select(steps: dict[Candidate, Step], rounds: int, n: int, batch: int
           ) -> tuple[dict[str, Candidate], dict[str, float]]:
    """Time every candidate and print its median images/s; return each model's fastest and
    {label: median images/s} of all."""
    print(f"\nselection: {rounds} interleaved round(s) x {n} steps per candidate")
    rates = interleaved(steps, rounds, n, batch)
    med = {c: statistics.median(v) for c, v in rates.items()}
    best = {m: max((c for c in med if c.model == m), key=med.__getitem__)
            for m in ("vitlib", "torchvision")}
    width = max(len(c.label) for c in med)
    for c, v in med.items():
        mark = "  <- fastest " + c.model if best[c.model] == c else ""
        print(f"  {c.label:<{width}}  {v:8.1f} img/s{mark}")
    return best, {c.label: round(v, 1) for c, v in med.items()}


def compare(steps: dict[Candidate, Step], rounds: int, n: int, batch: int) -> dict:
    """Alternate the chosen settings; print each round, the medians and vitlib / torchvision."""
    vit, tv = (next(c for c in steps if c.model == m) for m in ("vitlib", "torchvision"))
    print(f"\ncomparison: {rounds} rounds x {n} steps, alternating\n"
          f"  vitlib = {vit.label}, torchvision = {tv.label}")

    def say(r: int, rr: dict[Candidate, float]) -> None:
        print(f"  round {r + 1:2d}: vitlib {rr[vit]:8.1f}  torchvision {rr[tv]:8.1f} img/s  "
              f"ratio {rr[vit] / rr[tv]:.2f}x", flush=True)

    rates = interleaved(steps, rounds, n, batch, say)
    m_vit, m_tv = statistics.median(rates[vit]), statistics.median(rates[tv])
    ratio = m_vit / m_tv
    paired = statistics.median(a / b for a, b in zip(rates[vit], rates[tv]))
    verdict = "met" if ratio >= TARGET else "not met"
    print(f"\nmedian images/s: vitlib {m_vit:.1f} ({vit.label}), torchvision {m_tv:.1f} ({tv.label})")
    print(f"vitlib / torchvision: {ratio:.2f}x (median of per-round ratios {paired:.2f}x); "
          f"target >= {TARGET}x: {verdict}")
    return {"vitlib": {"setting": vit.label, "median_img_s": round(m_vit, 1),
                       "rounds_img_s": [round(v, 1) for v in rates[vit]]},
            "torchvision": {"setting": tv.label, "median_img_s": round(m_tv, 1),
                            "rounds_img_s": [round(v, 1) for v in rates[tv]]},
            "ratio": round(ratio, 3), "ratio_per_round_median": round(paired, 3),
            "target": TARGET, "target_met": ratio >= TARGET}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ap.add_argument("--threads", type=int, default=cores, help=f"torch threads (default: all {cores} cores)")
    ap.add_argument("--rounds", type=int, help=f"comparison rounds (default {FULL['rounds']})")
    ap.add_argument("--steps", type=int, help=f"training steps per model per round (default {FULL['steps']})")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, help=f"steps after building/compiling (default {FULL['warmup']})")
    ap.add_argument("--select-rounds", type=int, help=f"selection rounds (default {FULL['select_rounds']})")
    ap.add_argument("--select-steps", type=int, help=f"steps per candidate per selection round "
                                                     f"(default {FULL['select_steps']})")
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile candidates")
    ap.add_argument("--quick", action="store_true",
                    help="a few steps everywhere: a smoke test, not a measurement")
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    args = ap.parse_args()
    for k, v in (QUICK if args.quick else FULL).items():  # explicit options win over --quick
        if getattr(args, k) is None:
            setattr(args, k, v)
    for k in ("threads", "rounds", "steps", "batch", "warmup", "select_rounds", "select_steps"):
        if getattr(args, k) < 1:
            raise ValueError(f"--{k.replace('_', '-')} must be at least 1, got {getattr(args, k)}")
    return args


def main() -> None:
    args = parse_args()
    cfg = ViTConfig.fine()
    with num_threads(args.threads):
        print(f"CPU: {cpu_model()}\nmachine: {machine()}")
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}"
              + (" (--quick: a smoke test, not a measurement)" if args.quick else ""))
        print(f"fine model: {cfg.image_hw[0]} px, P={cfg.patch_size}, N={cfg.num_patches}, D={cfg.emb_dim}, "
              f"L={cfg.n_layers}, h={cfg.n_heads}, D_ff={cfg.mlp_dim}, qkv_bias={cfg.qkv_bias}, "
              f"patch_norm={cfg.patch_norm}")
        auto = auto_choice(cfg, args.batch)
        print(f"vitlib.train's bf16: auto would choose {auto} (eager, no optimiser step)\n")
        torch.manual_seed(0)
        print("building and warming up the candidates:")
        steps = prepare(candidates(not args.no_compile), cfg, args.batch, args.warmup)
        best, selection = select(steps, args.select_rounds, args.select_steps, args.batch)
        steps = {c: s for c, s in steps.items() if c in best.values()}  # drop the rest's models
        gc.collect()
        result = compare(steps, args.rounds, args.steps, args.batch)
    if args.json:
        meta = {"cpu": cpu_model(), "machine": machine(), "torch": torch.__version__,
                "threads": args.threads, "batch": args.batch, "quick": args.quick,
                "auto_choice": auto, "selection_img_s": selection,
                "selection": {"rounds": args.select_rounds, "steps": args.select_steps},
                "comparison": {"rounds": args.rounds, "steps": args.steps}}
        args.json.write_text(json.dumps({**meta, **result}, indent=1) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
