"""Chapter 07's experiments: ViT against a CNN on this book's data. Writes CSVs that the chapter
reads (benchmarks/vit_vs_cnn/); a finished row is never run twice, so an interrupted run resumes.

    python benchmarks/vit_vs_cnn.py grid        data efficiency: ViT and CNN at 1k, 4k, 16k, 55k
                                                training digits, 2 seeds, the same optimiser steps
    python benchmarks/vit_vs_cnn.py quickpoint  the point chapter 07 re-runs live in quick mode
                                                (ViT, 1k digits), 4 seeds, on this data source
    python benchmarks/vit_vs_cnn.py shortcut    both models on data where colour predicts the digit
                                                95% of the time; tested on random colours
    python benchmarks/vit_vs_cnn.py ablations   the ViT's design choices at equal CPU time

Every run is configs/default.yaml's recipe (AdamW, warm-up then cosine to the floor, bf16 where
it is faster) with --steps optimiser steps of 128 images and no torch.compile; --threads torch
threads (1: two runs side by side on two cores). MNIST comes from $VITLIB_MNIST as usual; with
none, the offline fallback (quickpoint records which source it ran on).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vitlib.compare import (ABLATIONS, ARCHS, SIZES, STEPS, colour_conflict, data_kind,  # noqa: E402
                            matched_config, train_and_test)
from vitlib.config import parse_config  # noqa: E402
from vitlib.train import make_dataset  # noqa: E402

# $VITLIB_CH07_OUT redirects the CSVs (a smoke run with --steps 10 must not touch the shipped ones)
OUT = Path(os.environ.get("VITLIB_CH07_OUT", ROOT / "benchmarks" / "vit_vs_cnn"))


def done(path: Path, keys: list[str]) -> set[tuple]:
    if not path.is_file():
        return set()
    with path.open() as f:
        return {tuple(r[k] for k in keys) for r in csv.DictReader(f)}


def append(path: Path, row: dict) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
    print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)


def grid(args, work: Path) -> None:
    path = OUT / "data_efficiency.csv"
    have = done(path, ["arch", "n_train", "seed"])
    for n in SIZES:
        for seed in (0, 1):
            for arch, model in ARCHS.items():
                if (arch, str(n), str(seed)) in have or (args.only and arch != args.only):
                    continue
                r = train_and_test(matched_config(model, args.steps, seed, args.threads, train_limit=n), work)
                append(path, {"arch": arch, "n_train": n, "seed": seed, "steps": args.steps,
                              **{k: r[k] for k in ("test_acc", "val_acc", "images_per_s", "seconds",
                                                   "params", "source")}})


def quickpoint(args, work: Path) -> None:
    path = OUT / "quick_point.csv"
    for seed in range(4):
        raw = matched_config({}, args.steps, seed, args.threads, train_limit=1000)
        kind = data_kind(parse_config(raw))
        if (kind, str(seed)) in done(path, ["data", "seed"]):
            continue
        grid_path = OUT / "data_efficiency.csv"
        same = [g for g in (csv.DictReader(grid_path.open()) if grid_path.is_file() else [])
                if (g["arch"], g["n_train"], g["seed"], g["steps"], g["source"]) ==
                ("vit", "1000", str(seed), str(args.steps), kind)]
        if same:  # the grid already ran this very config (same seed, steps, data): reuse it
            r = {"test_acc": same[0]["test_acc"], "n_test": "10000", "seconds": same[0]["seconds"]}
        else:
            r = train_and_test(raw, work)
        append(path, {"data": kind, "arch": "vit", "n_train": 1000, "seed": seed, "steps": args.steps,
                      "test_acc": r["test_acc"], "n_test": r["n_test"], "seconds": r["seconds"]})


def shortcut(args, work: Path) -> None:
    """Both models with colour = the digit's own colour on 95% of train images; test colours random.
    Also: on test images painted in *another* digit's colour, how often the answer follows colour."""
    from vitlib.probe import collect_features, probe_layers
    path, probes = OUT / "shortcut.csv", OUT / "shortcut_probes.csv"
    have = done(path, ["arch", "color_label_corr"])
    for arch, model in ARCHS.items():
        for corr in (0.0, 0.95):
            if (arch, str(corr)) in have:
                continue
            raw = matched_config(model, args.steps, 0, args.threads, color_label_corr=corr)
            r = train_and_test(raw, work)
            follows = colour_conflict(r["model"], make_dataset(parse_config(raw), "test"))
            append(path, {"arch": arch, "color_label_corr": corr, "steps": args.steps,
                          "test_acc": r["test_acc"], "conflict_acc": follows["acc"],
                          "follows_colour": follows["follows"], "seconds": r["seconds"]})
            if arch == "vit":  # what each layer of the ViT knows, on random-colour test images
                cfg = parse_config(raw)
                feats = collect_features(r["model"], make_dataset(cfg, "test"), n=3000)
                for row in probe_layers(feats):
                    append(probes, {"color_label_corr": corr, **{k: round(v, 4) if isinstance(v, float)
                                                                 else v for k, v in row.items()}})


def ablations(args, work: Path) -> None:
    path = OUT / "ablations.csv"
    have = done(path, ["variant"])
    for name, model in ABLATIONS.items():
        if name in have:
            continue
        r = train_and_test(matched_config(model, 0, 0, args.threads, minutes=args.minutes), work)
        append(path, {"variant": name, "minutes": args.minutes, "params": r["params"],
                      "images_per_s": r["images_per_s"], "test_acc": r["test_acc"], "seconds": r["seconds"]})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("grid", "quickpoint", "shortcut", "ablations"))
    ap.add_argument("--steps", type=int, default=STEPS, help="optimiser steps per run (grid, shortcut)")
    ap.add_argument("--minutes", type=float, default=4.0, help="wall-clock minutes per ablation row")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=tuple(ARCHS), default=None, help="grid: one architecture only")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        {"grid": grid, "quickpoint": quickpoint, "shortcut": shortcut, "ablations": ablations}[args.what](
            args, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
