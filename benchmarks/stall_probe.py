"""Does executing a chapter ever stall? Runs one notebook N times with nbclient, as the book
build does, and prints each run's wall time; a run that waits out the cell timeout is a stall.

    .venv/bin/python benchmarks/stall_probe.py notebooks/04_vit.ipynb --runs 30 --parallel 2

Quick mode (VITLIB_QUICK=1) is set for the kernels. Prints the installed ipykernel, nbclient
and jupyter_client versions first, since those are what a stall depends on.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError


def run_once(path: Path, timeout: int) -> tuple[float, str]:
    """Wall time of one execution, and where it went: kernel start, the slowest cell, shutdown."""
    nb = nbformat.read(path, as_version=4)
    marks: list[tuple[str, float]] = []
    hook = lambda name: (lambda **kw: marks.append((f"{name} {kw.get('cell_index', '')}", time.perf_counter())))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            on_cell_start=hook("start"), on_cell_executed=hook("done"))
    t0 = time.perf_counter()
    try:
        client.execute()
        status = "ok"
    except CellTimeoutError:
        status = "TIMEOUT"
    except Exception as e:  # noqa: BLE001 - report any failure, keep probing
        status = f"error: {type(e).__name__}"
    t1 = time.perf_counter()
    starts = [(n, t) for n, t in marks if n.startswith("start")]
    cells = [(int(a[0].split()[1]), b[1] - a[1]) for a, b in zip(marks[::2], marks[1::2])]
    slow = max(cells, key=lambda c: c[1]) if cells else (-1, 0.0)
    where = (f"kernel start {starts[0][1] - t0:.1f} s, slowest cell #{slow[0]} {slow[1]:.1f} s, "
             f"after last cell {t1 - marks[-1][1]:.1f} s" if starts else "no cell ran")
    return t1 - t0, f"{status} ({where})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--parallel", type=int, default=1, help="kernels at once")
    ap.add_argument("--timeout", type=int, default=45, help="cell timeout in seconds")
    ap.add_argument("--sliced", action="store_true",
                    help="wait for kernel messages in 1 s slices, as the book build does (book/_ext/kernel_wait.py), "
                         "and count the lost wake-ups it recovers from")
    args = ap.parse_args()
    if args.sliced:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "book" / "_ext"))
        import kernel_wait
        kernel_wait.patch()
    os.environ["VITLIB_QUICK"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(" ".join(f"{p} {version(p)}" for p in ("ipykernel", "nbclient", "jupyter_client", "pyzmq")))
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda _: run_once(args.notebook, args.timeout), range(args.runs)))
    for i, (s, status) in enumerate(results, 1):
        print(f"run {i:3d}: {s:6.1f} s {status}")
    times = [s for s, _ in results]
    med = statistics.median(times)
    slow = [s for s in times if s > 2 * med]
    print(f"{args.runs} runs of {args.notebook.name}: median {med:.1f} s, max {max(times):.1f} s, "
          f"{len(slow)} over 2x the median, {sum(not st.startswith('ok') for _, st in results)} not ok")
    if args.sliced:
        print(f"lost wake-ups recovered by the 1 s slices: {len(kernel_wait.LATE)}")


if __name__ == "__main__":
    main()
