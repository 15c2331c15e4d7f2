"""Cold book builds, back to back: each notebook's execution time in each build, to show that no
build stalls (a stall is one notebook waiting out a lost kernel message: many times its median).

    .venv/bin/python benchmarks/book_builds.py --builds 5

Each build first deletes the execution cache (book/_build/.jupyter_cache and jupyter_execute), so
every notebook runs, then runs `make book` and reads "Executed notebook in X seconds" per notebook
from its log. Prints a table (seconds), each notebook's median and worst/median ratio.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"(\w+)\.ipynb: Executed notebook in ([\d.]+) seconds")


def one_build(log: Path) -> tuple[dict[str, float], float]:
    for sub in (".jupyter_cache", "jupyter_execute"):
        shutil.rmtree(ROOT / "book" / "_build" / sub, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run(["make", "book"], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise SystemExit(f"make book failed (rc {proc.returncode}); log: {log}")
    return {m[1]: float(m[2]) for m in LINE.finditer(proc.stdout + proc.stderr)}, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--builds", type=int, default=5)
    ap.add_argument("--logs", type=Path, default=Path("/tmp"))
    args = ap.parse_args()
    print(" ".join(f"{p} {version(p)}" for p in ("ipykernel", "nbclient", "jupyter_client", "jupyter-book")))
    runs = []
    for i in range(args.builds):
        times, wall = one_build(args.logs / f"book_build_{i + 1}.log")
        runs.append(times)
        print(f"build {i + 1}: {wall:.0f} s wall, " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(times.items())),
              flush=True)
    names = sorted(set().union(*runs))
    print("\n| notebook | " + " | ".join(f"build {i + 1}" for i in range(len(runs))) + " | median | max / median |")
    print("|---" * (len(runs) + 3) + "|")
    worst = 0.0
    for n in names:
        ts = [r.get(n, float("nan")) for r in runs]
        med = statistics.median(ts)
        worst = max(worst, max(ts) / med)
        print(f"| {n} | " + " | ".join(f"{t:.1f}" for t in ts) + f" | {med:.1f} | {max(ts) / med:.2f} |")
    print(f"\nworst notebook time / its median: {worst:.2f} (a stall would be >= 2)")


if __name__ == "__main__":
    main()
