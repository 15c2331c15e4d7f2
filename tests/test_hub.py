"""The pretrained-model hub: export a run, load it back, and "load the checkpoint, else train"."""
import json

import pytest
import torch

import vitlib.hub as hub
from vitlib.checkpoint import load_checkpoint, save_checkpoint, vit_config_to_dict
from vitlib.config import load_config
from vitlib.model import ViT, ViTConfig

TINY = ViTConfig(image_size=16, patch_size=4, emb_dim=32, n_layers=2, n_heads=2, mlp_dim=64)


def write_run(run_dir, cfg=TINY, val_acc=0.5):
    torch.manual_seed(0)
    model = ViT(cfg)
    save_checkpoint({"model": model.state_dict(), "vit_config": vit_config_to_dict(cfg),
                     "config": {"train_params": {"task_name": "t"}}, "epoch": 3, "best_metric": val_acc,
                     "history": [{"epoch": 1, "val_acc": val_acc, "train_loss": 1.0}]}, run_dir / "best.pt")
    (run_dir / "metrics.csv").write_text("epoch,val_acc\n1,0.5\n")
    (run_dir / "output").mkdir()
    (run_dir / "output" / "metrics.json").write_text(json.dumps({"test_acc": 0.6}))
    return model


def test_export_and_load_pretrained(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "CHECKPOINT_DIR", tmp_path / "ckpts")
    with pytest.raises(FileNotFoundError, match="vitlib.hub export"):
        hub.load_pretrained("nope")
    run = tmp_path / "run"
    run.mkdir()
    model = write_run(run)
    out = hub.export_pretrained(run, "mini")
    assert out == tmp_path / "ckpts" / "mini.pt"
    assert (tmp_path / "ckpts" / "mini_metrics.csv").read_text().startswith("epoch,val_acc")
    meta = json.loads((tmp_path / "ckpts" / "mini_metrics.json").read_text())
    assert meta["test"] == {"test_acc": 0.6} and meta["val"]["val_acc"] == 0.5
    assert "optimizer" not in load_checkpoint(out)
    loaded, info = hub.load_pretrained("mini")
    assert info["metrics"]["test"]["test_acc"] == 0.6 and info["vit_config"]["emb_dim"] == 32
    assert not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert hub.available_pretrained() == ["mini"]
    # a size cap halves the file: fp16 on disk, fp32 after loading
    hub.export_pretrained(run, "half", max_mb=0.01)
    assert load_checkpoint(tmp_path / "ckpts" / "half.pt")["model"]["head.weight"].dtype == torch.float16
    half, _ = hub.load_pretrained("half")
    assert half.head.weight.dtype == torch.float32
    torch.testing.assert_close(half.head.weight, model.head.weight, atol=1e-3, rtol=1e-3)


def test_load_or_train(tmp_path, monkeypatch, micro_config):
    monkeypatch.setattr(hub, "CHECKPOINT_DIR", tmp_path / "ckpts")
    cfg_path = micro_config(model={"n_layers": 1}, train_params={"epochs": 1})
    out = tmp_path / "out"
    model, info = hub.load_or_train(cfg_path, out_dir=out)
    assert info["source"] == "trained" and (out / "runs" / "micro" / "best.pt").is_file()
    again, info = hub.load_or_train(cfg_path, out_dir=out)  # second call: no training
    assert info["source"] == "run"
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)
    hub.export_pretrained(out / "runs" / "micro", "default")
    _, info = hub.load_or_train(cfg_path, out_dir=tmp_path / "elsewhere")
    assert info["source"] == "pretrained"
    # a config describing another model never gets the pretrained weights
    other = micro_config(model={"n_layers": 1, "emb_dim": 48}, train_params={"epochs": 1}, name="other.yaml")
    m, info = hub.load_or_train(other, out_dir=tmp_path / "other_out")
    assert info["source"] == "trained" and m.config.emb_dim == 48


def test_find_model_prefers_the_run_then_the_matching_shipped_model(tmp_path, monkeypatch, micro_config):
    monkeypatch.setattr(hub, "CHECKPOINT_DIR", tmp_path / "ckpts")
    cfg = load_config(micro_config())
    with pytest.raises(FileNotFoundError, match="Train first"):
        hub.find_model(cfg, tmp_path / "no_run")
    shipped_run = tmp_path / "shipped"
    shipped_run.mkdir()
    write_run(shipped_run, cfg=cfg.model)
    hub.export_pretrained(shipped_run, "default")
    _, source = hub.find_model(cfg, tmp_path / "no_run")
    assert source == str(tmp_path / "ckpts" / "default.pt")
    own = tmp_path / "own"
    own.mkdir()
    write_run(own, cfg=cfg.model)
    _, source = hub.find_model(cfg, own)
    assert source == str(own / "best.pt")
    other = load_config(micro_config(model={"emb_dim": 48}, name="other.yaml"))
    assert hub.shipped_for(other.model) is None
    with pytest.raises(FileNotFoundError):
        hub.find_model(other, tmp_path / "no_run")


@pytest.mark.parametrize("name, config", [("fine", "configs/fine.yaml"), ("fine_sincos", "configs/fine_sincos.yaml")])
def test_the_fine_models_ship_with_their_configs_and_metrics(name, config):
    from vitlib.config import load_config
    from vitlib.hub import CHECKPOINT_DIR, load_pretrained, shipped_for
    from vitlib.interpret import pos_embed_spearman
    from vitlib.model import ViTConfig

    model, info = load_pretrained(name)
    cfg = load_config(config)
    assert shipped_for(cfg.model, name) is not None          # the shipped weights are this config's model
    assert model.config.grid_size == (8, 8) and model.config.pos_embed == cfg.model.pos_embed
    if name == "fine":
        assert cfg.model == ViTConfig.fine()
    assert info["metrics"]["test"]["n_test"] == 10_000 and info["metrics"]["test"]["test_acc"] > 0.9
    for ext in ("_metrics.csv", "_metrics.json"):
        assert (CHECKPOINT_DIR / f"{name}{ext}").is_file()
    rho = pos_embed_spearman(model)
    assert -1 <= rho <= 1 and (rho < -0.8 if name == "fine_sincos" else True)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
