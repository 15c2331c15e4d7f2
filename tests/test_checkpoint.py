"""Checkpoint I/O: atomic writes, clear errors for corrupt files and mismatched configs,
and RNG round trips (the pretrained export / load / load_or_train path: test_hub.py)."""
import random

import numpy as np
import pytest
import torch

import vitlib.checkpoint as ck
from vitlib.checkpoint import CheckpointError
from vitlib.model import ViT, ViTConfig

TINY = ViTConfig(image_size=16, patch_size=4, emb_dim=32, n_layers=2, n_heads=2, mlp_dim=64)


def make_ckpt(cfg=TINY, **extra):
    torch.manual_seed(0)
    model = ViT(cfg)
    return model, {"model": model.state_dict(), "vit_config": ck.vit_config_to_dict(cfg),
                   "config": {"train_params": {"task_name": "t"}}, "epoch": 3, "history": [], **extra}


def test_atomic_save_roundtrip_leaves_no_temp_files(tmp_path):
    model, state = make_ckpt(rng=ck.rng_state())
    path = ck.save_checkpoint(state, tmp_path / "sub" / "a.pt")
    ck.save_checkpoint(state, path)  # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.pt"]
    loaded = ck.load_checkpoint(path)  # weights_only=True inside
    for k, v in model.state_dict().items():
        assert torch.equal(loaded["model"][k], v)
    m2 = ck.model_from_checkpoint(loaded, TINY, path)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(m2(x), model.eval()(x), rtol=0, atol=0)


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    _, state = make_ckpt()
    path = ck.save_checkpoint(state, tmp_path / "a.pt")
    before = path.read_bytes()

    def dying_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(state, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_truncated_and_garbage_files_give_a_clear_error(tmp_path):
    _, state = make_ckpt()
    path = ck.save_checkpoint(state, tmp_path / "best.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"best\.pt is truncated or corrupt.*Delete") as e:
        ck.load_checkpoint(path)
    assert isinstance(e.value, ValueError)
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="best.pt"):
        ck.load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, path)  # valid torch file, not a vitlib checkpoint
    with pytest.raises(CheckpointError, match="not a vitlib checkpoint"):
        ck.load_checkpoint(path)
    torch.save({"model": random.Random()}, path)  # arbitrary pickled object: refused by weights_only
    with pytest.raises(CheckpointError, match="beyond tensors"):
        ck.load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="python -m vitlib.train"):
        ck.load_checkpoint(tmp_path / "missing.pt")


def test_mismatched_config_names_every_field(tmp_path):
    _, state = make_ckpt()
    path = ck.save_checkpoint(state, tmp_path / "best.pt")
    other = ViTConfig(image_size=16, patch_size=4, emb_dim=48, n_layers=3, n_heads=2, mlp_dim=64)
    with pytest.raises(CheckpointError) as e:
        ck.model_from_checkpoint(ck.load_checkpoint(path), other, path)
    msg = str(e.value)
    assert "best.pt" in msg
    assert "emb_dim: checkpoint 32 vs config 48" in msg and "n_layers: checkpoint 2 vs config 3" in msg
    assert "mlp_dim" not in msg
    # dropout does not change the weights: loading ignores it, resuming (weights_only=False) does not
    drop = ViTConfig(**{**TINY.to_dict(), "attn_dropout": 0.1})
    ck.model_from_checkpoint(ck.load_checkpoint(path), drop, path)
    with pytest.raises(CheckpointError, match="attn_dropout: checkpoint 0.0 vs config 0.1"):
        ck.check_config(ck.load_checkpoint(path), drop, path, weights_only=False)


def test_rng_state_roundtrip(tmp_path):
    state = ck.rng_state()
    ck.save_checkpoint({"model": {}, "vit_config": {}, "rng": state}, tmp_path / "r.pt")
    a = (torch.rand(3), np.random.rand(3), random.random())
    ck.set_rng_state(ck.load_checkpoint(tmp_path / "r.pt")["rng"])
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
