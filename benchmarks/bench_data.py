"""How fast is the data? Samples/s for the per-sample Dataset and the batched fast path.

    python benchmarks/bench_data.py [--threads N] [--seconds S]

Per-sample: torch DataLoader, num_workers=0, default collate (what a textbook loop does).
Batched:    vitlib.data.BatchLoader, which composites whole batches with tensor ops (what
            vitlib.train uses). Both on the train split (random crops, the costlier path).
Each rate is given per wall-clock second and per CPU second of this process: on a busy shared
machine the wall rate drops with the load, while the CPU rate (with --threads 1) stays close to
what one quiet core does. The load average is printed so you can judge.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch.utils.data import DataLoader

from vitlib.data import BatchLoader, ColoredMNIST, DigitAugment


def rate(batches, seconds: float) -> tuple[float, float]:
    """(samples per wall second, samples per CPU second) over at least `seconds`, after a warm-up batch."""
    it = iter(batches)
    next(it)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    for b in it:
        n += len(b["image"])
        if time.perf_counter() - t0 > seconds:
            break
    return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()} {platform.processor() or ''} | {os.cpu_count()} CPUs visible | "
          f"python {platform.python_version()} | torch {torch.__version__} | "
          f"torch threads {torch.get_num_threads()} | load average {os.getloadavg()[0]:.1f}")
    for size in (32, 224):
        t0 = time.perf_counter()
        ds = ColoredMNIST("train", image_size=size)
        setup = time.perf_counter() - t0
        per_sample = rate(DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=0), args.seconds)
        loader = BatchLoader(ds, args.batch_size, shuffle=True)
        rate(loader, 0.1)     # first pass precomputes the digit masks (at 32 px); time the steady state
        batched = rate(loader, args.seconds)
        ds.augment = DigitAugment(shift=2 * size / 32, rotate=8, scale=0.08)   # configs/default.yaml's moves
        moved = rate(BatchLoader(ds, args.batch_size, shuffle=True), args.seconds)
        print(f"{size:>3} px  setup {setup:4.1f} s | per-sample Dataset {per_sample[0]:7,.0f}/s wall "
              f"{per_sample[1]:7,.0f}/s CPU | batched {batched[0]:7,.0f}/s wall {batched[1]:7,.0f}/s CPU | "
              f"batched + digit moves {moved[0]:7,.0f}/s wall {moved[1]:7,.0f}/s CPU | "
              f"batch {args.batch_size} | {ds.source}")
        print(f"        one batched sample costs {1e6 / batched[1]:.0f} us of CPU ({1e6 / moved[1]:.0f} us with "
              f"digit moves): compare with the training step's time per image in bench_train.py")


if __name__ == "__main__":
    main()
