"""Configs, the learning-rate schedule, multi-task training, and bit-for-bit resume."""
import csv
import dataclasses
import math
from pathlib import Path

import pytest
import torch
import yaml

from vitlib import config as C
from vitlib.budget import Plan, lr_at
from vitlib.checkpoint import load_checkpoint
from vitlib.model import ViTConfig
from vitlib.train import make_dataset, make_optimizer, train

from conftest import write_micro  # the shared micro config (tests/conftest.py)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def micro(tmp_path, model=None, train_params=None, name="micro.yaml"):
    return write_micro(tmp_path, model=model, train_params=train_params, name=name)


def arch(cfg: ViTConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k in ViTConfig.fields_of_kind("arch")}


def test_shipped_configs_load_and_match_the_presets():
    quick, default, seed = (C.load_config(CONFIGS / f"{n}.yaml") for n in ("quick", "default", "seed"))
    assert arch(default.model) == arch(ViTConfig.default())
    assert arch(seed.model) == arch(ViTConfig.original())
    assert seed.train.optimizer == "adam" and seed.train.scheduler == "plateau"  # the original's recipe
    assert quick.dataset.epoch_samples and quick.model.image_size <= 32
    assert default.model.image_size == 32 and default.dataset.train_limit is None
    for cfg in (quick, default, seed):
        assert cfg.run_dir("/x") == Path("/x") / cfg.train.task_name


@pytest.mark.parametrize("section,key", [("train_params", "learning_rate"), ("dataset_params", "subsett"),
                                         ("model_params", "n_head"), ("inference_params", "n_images")])
def test_unknown_keys_are_named(tmp_path, section, key):
    path = tmp_path / "bad.yaml"
    raw = yaml.safe_load((CONFIGS / "quick.yaml").read_text())
    raw.setdefault(section, {})[key] = 1
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=key):
        C.load_config(path)


def test_config_errors(tmp_path):
    raw = yaml.safe_load((CONFIGS / "quick.yaml").read_text())
    with pytest.raises(ValueError, match="unknown section.*training"):
        C.parse_config({**raw, "training": {}})
    with pytest.raises(ValueError, match="optimizer.*adamw, adam"):
        C.parse_config(C.merge(raw, {"train_params": {"optimizer": "sgd"}}))
    with pytest.raises(ValueError, match="bf16"):
        C.parse_config(C.merge(raw, {"train_params": {"bf16": "maybe"}}))
    with pytest.raises(FileNotFoundError, match="configs/"):
        C.load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("train_params: [\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        C.load_config(tmp_path / "broken.yaml")
    cfg = C.load_config(CONFIGS / "quick.yaml", {"train_params": {"epochs": 7}})
    assert cfg.train.epochs == 7 and cfg.raw["train_params"]["epochs"] == 7


def test_original_yaml_parses():
    # The original project's config/default.yaml, verbatim apart from root_dir.
    raw = {"dataset_params": {},
           "model_params": {"n_heads": 8, "head_dim": 64, "emb_dim": 128, "attn_drop": 0.1, "ff_dim": 256,
                            "ff_drop": 0.1, "n_layers": 6, "bg_classes": 44, "num_classes": 10,
                            "image_height": 224, "image_width": 224, "patch_height": 16, "patch_width": 16,
                            "patch_emb_drop": 0.1, "im_channels": 3},
           "train_params": {"task_name": "default", "batch_size": 64, "epochs": 100, "lr": 0.001,
                            "seed": 1111, "ckpt_name": "vit_ckpt.pth"}}
    cfg = C.parse_config(raw)
    assert arch(cfg.model) == arch(ViTConfig.original())
    assert cfg.train.ckpt_name == "vit_ckpt.pth"


def test_warmup_cosine_schedule():
    tp = C.TrainParams(lr=1e-3, epochs=4, warmup_epochs=1, min_lr=1e-5)
    lrs = [lr_at(step, tp, Plan(4), steps_per_epoch=10) for step in range(40)]
    assert math.isclose(lrs[0], 1e-4) and math.isclose(lrs[9], 1e-3)        # linear warm-up
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:]))                     # then strictly decaying
    assert math.isclose(lrs[25], 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert math.isclose(lr_at(40, tp, Plan(4), 10), 1e-5)                      # min_lr at the plan's end
    opt = make_optimizer(torch.nn.Linear(2, 2), tp)
    assert opt.param_groups[0]["weight_decay"] == tp.weight_decay and opt.param_groups[1]["weight_decay"] == 0


def test_each_step_trains_at_the_schedules_rate(tmp_path, monkeypatch):
    """The training loop sets every optimiser step's rate to lr_at(step): a spy on the optimiser."""
    seen = []
    original = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    cfg = C.load_config(micro(tmp_path))
    run = train(cfg, out_dir=tmp_path, progress=False)
    steps = len(seen)
    assert steps == 12 and run["history"][-1]["lr"] == lr_at(steps, cfg.train, Plan(2), steps // 2)
    assert seen == [lr_at(i, cfg.train, Plan(2), steps // 2) for i in range(steps)]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_resume_is_bit_for_bit(tmp_path):
    cfg = micro(tmp_path)
    full = train(cfg, out_dir=tmp_path / "a", progress=False)
    half = train(cfg, out_dir=tmp_path / "b", progress=False, stop_after_epochs=1)
    assert len(half["history"]) == 1
    assert load_checkpoint(tmp_path / "b" / "runs" / "micro" / "last.pt")["epoch"] == 1
    resumed = train(cfg, out_dir=tmp_path / "b", resume=True, progress=False)
    a, b = full["model"].state_dict(), resumed["model"].state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    keys = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"]
    assert [[r[k] for k in keys] for r in full["history"]] == [[r[k] for k in keys] for r in resumed["history"]]
    for run in ("a", "b"):
        rows = read_csv(tmp_path / run / "runs" / "micro" / "metrics.csv")
        assert [r["epoch"] for r in rows] == ["1", "2"]
    # the optimiser and scheduler resumed too: the full checkpoints agree
    ca = load_checkpoint(tmp_path / "a" / "runs" / "micro" / "last.pt")
    cb = load_checkpoint(tmp_path / "b" / "runs" / "micro" / "last.pt")
    assert ca["global_step"] == cb["global_step"] == 12
    assert ca["scheduler"]["last_epoch"] == cb["scheduler"]["last_epoch"]
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])


def test_resume_refuses_another_model(tmp_path):
    cfg = micro(tmp_path, train_params={"epochs": 1})
    train(cfg, out_dir=tmp_path, progress=False)
    other = micro(tmp_path, model={"emb_dim": 48}, name="other.yaml")
    with pytest.raises(ValueError, match="emb_dim: checkpoint 32 vs config 48"):
        train(other, out_dir=tmp_path, resume=True, progress=False)


def test_multitask_heads_and_original_optimiser(tmp_path):
    cfg = micro(tmp_path, model={"num_textures": 13, "predict_color": True},
                train_params={"epochs": 1, "optimizer": "adam", "scheduler": "plateau",
                              "color_loss": "l1", "label_smoothing": 0.1})
    res = train(cfg, out_dir=tmp_path, progress=False)
    row = read_csv(tmp_path / "runs" / "micro" / "metrics.csv")[0]
    assert 0 <= float(row["val_texture_acc"]) <= 1 and 0 <= float(row["val_color_mae"]) < 1
    assert float(row["images_per_s"]) > 0 and float(row["val_loss"]) > 0
    out = res["model"](torch.zeros(2, 3, 16, 16))
    assert out["texture"].shape == (2, 13) and out["color"].shape == (2, 3)
    bad = micro(tmp_path, model={"num_textures": 5}, name="bad.yaml")
    with pytest.raises(ValueError, match="num_textures: 13"):
        train(bad, out_dir=tmp_path / "bad", progress=False)


def test_compile_failure_falls_back_to_eager(tmp_path, monkeypatch, capsys):
    def broken_compile(module, *args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("no C compiler found\nmore detail")
        return fail
    monkeypatch.setattr(torch, "compile", broken_compile)
    cfg = micro(tmp_path, train_params={"epochs": 1, "compile": True})
    res = train(cfg, out_dir=tmp_path, progress=False)
    out = capsys.readouterr().out
    assert "torch.compile failed (RuntimeError: no C compiler found); training eagerly" in out
    assert len(res["history"]) == 1 and res["history"][0]["train_loss"] > 0
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in res["model"].parameters())


def test_digit_augment_config_reaches_the_train_split(tmp_path):
    from vitlib.train import make_dataset
    cfg = C.load_config(micro(tmp_path), overrides={"dataset_params": {"aug_shift": 2, "aug_rotate": 5,
                                                                                "aug_elastic": 1.5}})
    train_ds, val_ds = make_dataset(cfg, "train"), make_dataset(cfg, "val")
    aug = getattr(train_ds, "ds", train_ds).augment
    assert (aug.shift, aug.rotate, aug.scale, aug.elastic) == (2, 5, 0, 1.5)
    assert getattr(val_ds, "ds", val_ds).augment is None


def test_epoch_samples_cycles_a_small_training_set(tmp_path):
    """epoch_samples sizes an epoch in samples seen: a small set is repeated, each draw fresh."""
    cfg = C.load_config(micro(tmp_path), overrides={"dataset_params": {"train_limit": 100, "epoch_samples": 250}})
    ds = make_dataset(cfg, "train")
    assert len(ds) == 250 and ds.distinct == 100
    assert torch.equal(ds.labels, ds.ds.labels[torch.arange(250) % 100])
    assert int(ds[249]["number_cls"]) == int(ds.ds.labels[49])        # index 249 is image 49, drawn again
    batch = ds.get_batch(torch.tensor([3, 103, 203]), generator=torch.Generator().manual_seed(0))
    assert batch["number_cls"].unique().numel() == 1                    # the same digit three times ...
    assert not torch.equal(batch["image"][0], batch["image"][1])        # ... on fresh backgrounds
    with pytest.raises(IndexError):
        ds.get_batch(torch.tensor([250]))
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match=r"dataset_params.epoch_samples = .*whole number >= 1"):
            C.load_config(micro(tmp_path), overrides={"dataset_params": {"epoch_samples": bad}})
