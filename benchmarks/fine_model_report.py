"""The figures of the shipped fine model for benchmarks/RESULTS.md (issue 17).

    VITLIB_MNIST=... python benchmarks/fine_model_report.py [--n 1000] [--out benchmarks/fine_model]

Prints, and writes as CSV under --out: the six explanation methods (and a random map) scored
against the exact digit masks of n test images (pointing game, mass on the digit, standard
errors, seconds), the linear probes at every depth, and the position tables' Spearman rho with
the test accuracy of each model.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from vitlib import explain, interpret, probe, viz
from vitlib.config import parse_config
from vitlib.hub import load_pretrained
from vitlib.train import make_dataset


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000, help="test images to score the explanations on")
    ap.add_argument("--probe-n", type=int, default=3000)
    ap.add_argument("--out", default="benchmarks/fine_model")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model, info = load_pretrained("fine")
    test = make_dataset(parse_config(info["config"]), "test")
    pos = []
    for name in ("fine", "fine_sincos"):
        m, i = load_pretrained(name)
        table, (gh, gw) = interpret.pos_embed_table(m), m.config.grid_size
        pos.append({"model": name, "pos_embed": m.config.pos_embed, "test_acc": i["metrics"]["test"]["test_acc"],
                    "epochs": i["epoch"], "spearman": round(interpret.pos_embed_spearman(m), 4),
                    "spearman_centred": round(interpret.pos_embed_spearman(table - table.mean(0), m.config.grid_size), 4),
                    # the inner 6x6 patches: the outer ring is texture in nearly every image
                    "spearman_inner": round(interpret.pos_embed_spearman(
                        table.reshape(gh, gw, -1)[1:-1, 1:-1].reshape((gh - 2) * (gw - 2), -1), (gh - 2, gw - 2)), 4)})
        print(pos[-1])
    write_csv(pos, out / "position_tables.csv")
    grid = model.config.grid_size
    methods = {**explain.METHODS, "random map (chance)": lambda m, imgs: torch.rand(len(imgs), *grid)}
    t0 = time.perf_counter()
    rows = explain.score_methods(model, test, n=a.n, methods=methods)
    print(f"scored {a.n} images in {time.perf_counter() - t0:.0f} s")
    for r in rows:
        print(f"{r['method']:<28} pointing {r['pointing']:.3f} ± {r['pointing_se']:.3f}  "
              f"mass {r['mass']:.2f} ± {r['mass_se']:.2f}  {100 * r['seconds'] / a.n:.2f} s/100 img")
    write_csv(rows, out / "explanation_scores.csv")
    feats = probe.collect_features(model, test, n=a.probe_n)
    probe_rows = probe.probe_layers(feats)
    for r in probe_rows:
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})
    write_csv(probe_rows, out / "probes.csv")
    viz.plot_probes(probe_rows, out / "probes.png", title=f"Linear probes of the fine model ({a.probe_n:,} test images)")
    print(f"wrote {out / 'probes.png'}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
