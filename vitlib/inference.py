"""Evaluate a trained ViT and draw what it learned: `python -m vitlib.inference --config X`.

The original's tools/inference.py, done right. Writes to <out>/<task_name>/output/:
    metrics.json                     test digit accuracy (+ texture accuracy, colour MAE, per class)
    confusion.png                    the test confusion matrix
    overlay_{i}.png                  input | the original's attention rollout | Abnar & Zuidema's
    position_plot.png                position-embedding cosine similarity (ViT Fig. 7 centre)
    attention_distance.png           mean attention distance per head and layer (Fig. 7 right)
    patch_filters.png                principal components of the patch filters (Fig. 7 left)

The checkpoint is <task_name>/<ckpt_name> (the best on validation); --ckpt picks another. With
neither, the shipped pretrained model is used if the config describes the same model.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from vitlib import interpret, viz
from vitlib.config import Config, load_config, parse_config, run_arg_parser, run_cli
from vitlib.data import BatchLoader
from vitlib.hub import find_model
from vitlib.model import as_heads
from vitlib.paths import atomic_write_text
from vitlib.runtime import num_threads
from vitlib.train import Objective, evaluate, make_dataset


def run_inference(config: Config | str | Path | dict, out_dir: str | Path | None = None,
                  ckpt: str | Path | None = None, num_images: int | None = None,
                  progress: bool = True) -> dict:
    """Test metrics + figures for a run; returns the metrics dict also written to metrics.json."""
    cfg = (config if isinstance(config, Config) else
           parse_config(config) if isinstance(config, dict) else load_config(config))
    run_dir = cfg.run_dir(out_dir)
    output = run_dir / "output"
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu")
    with num_threads(cfg.train.num_threads):
        return _run(cfg, run_dir, output, device, ckpt, num_images, progress)


def _run(cfg: Config, run_dir: Path, output: Path, device: torch.device, ckpt, num_images,
         progress: bool) -> dict:
    model, source = find_model(cfg, run_dir, ckpt, device)
    output.mkdir(parents=True, exist_ok=True)

    # Accuracy: fp32 and no label smoothing, so the number is reproducible and comparable.
    test_ds = make_dataset(cfg, "test")
    loader = BatchLoader(test_ds, cfg.inference.batch_size, shuffle=False,
                         device=device if device.type == "cuda" else None)
    res = evaluate(model, loader, device, False, Objective(cfg.train, label_smoothing=0.0),
                   return_predictions=True, desc="test" if progress else None)
    k = cfg.model.num_classes
    cm = viz.confusion_matrix(res["targets"], res["preds"], k)
    per_class = (cm.diag().double() / cm.sum(1).clamp_min(1).double()).tolist()
    metrics = {"test_acc": res["acc"], "test_loss": res["loss"], "test_texture_acc": res["texture_acc"],
               "test_color_mae": res["color_mae"], "n_test": res["n"], "per_class_acc": per_class,
               "checkpoint": source, "config": cfg.path, "data_source": getattr(test_ds, "source", None)}
    print(f"test digit accuracy {res['acc']:.2%} on {res['n']:,} images ({source})")
    if res["texture_acc"] is not None:
        print(f"test texture accuracy {res['texture_acc']:.2%}")
    if res["color_mae"] is not None:
        print(f"test colour MAE {res['color_mae']:.4f} (RGB in [0, 1])")
    atomic_write_text(output / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    viz.plot_confusion(cm, [str(i) for i in range(k)], output / "confusion.png",
                       title=f"Confusion matrix (test, accuracy {res['acc']:.2%})")

    # Attention rollout for a fixed sample of test images, both variants side by side.
    n = min(num_images if num_images is not None else cfg.inference.num_images, len(test_ds))
    idx = torch.randperm(len(test_ds), generator=torch.Generator().manual_seed(cfg.train.seed))[:n]
    batch = test_ds.get_batch(idx)
    grid, pool = cfg.model.grid_size, cfg.model.pool
    with torch.no_grad():
        out, attn = model(batch["image"].to(device), return_attention=True)
    pred = as_heads(out)["number"].argmax(-1).cpu()
    maps = {"original": interpret.attention_rollout(attn, "original", grid=grid, pool=pool),
            "abnar": interpret.attention_rollout(attn, "abnar", discard_ratio=cfg.inference.discard_ratio,
                                                 grid=grid, pool=pool)}
    names = {"original": "rollout (original: max heads)",
             "abnar": "rollout (Abnar & Zuidema)" + (f", discard {cfg.inference.discard_ratio:g}"
                                                     if cfg.inference.discard_ratio else "")}
    for i in range(n):
        viz.plot_rollout(batch["image"][i], {names[v]: maps[v][i] for v in maps},
                         title=f"digit {int(batch['number_cls'][i])}, predicted {int(pred[i])}",
                         path=output / f"overlay_{i}.png")

    viz.plot_pos_similarity(interpret.pos_embed_similarity(model), output / "position_plot.png")
    dist = interpret.mean_attention_distance(attn, grid, cfg.model.patch_size)
    viz.plot_attention_distance(dist, output / "attention_distance.png")
    viz.plot_patch_filters(interpret.patch_filter_pca(model, k=28), output / "patch_filters.png")
    print(f"figures in {output}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = run_arg_parser("python -m vitlib.inference", __doc__.split("\n")[0])
    ap.add_argument("--ckpt", default=None, help="checkpoint to evaluate (default: <task_name>/<ckpt_name>)")
    ap.add_argument("--num-images", type=int, default=None, help="attention overlays to draw")
    return run_cli(ap, lambda cfg, args: run_inference(cfg, out_dir=args.out, ckpt=args.ckpt,
                                                        num_images=args.num_images), argv)


if __name__ == "__main__":
    sys.exit(main())
