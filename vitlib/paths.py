"""Where vitlib looks for things on disk, in one place.

Every path can be overridden with an environment variable, so that CI, a notebook server
or a reader's own machine can point vitlib at an existing copy instead of downloading.
"""
from __future__ import annotations

import os
from pathlib import Path

# The repository root when vitlib is installed in editable mode (the normal set-up).
REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Folder where datasets land: $VITLIB_DATA, else <repo>/data."""
    return Path(os.environ.get("VITLIB_DATA", REPO_ROOT / "data"))


def mnist_dir() -> Path:
    """Folder holding MNIST in torchvision's layout: $VITLIB_MNIST, else <data>/mnist."""
    return Path(os.environ.get("VITLIB_MNIST", data_dir() / "mnist"))


def is_quick() -> bool:
    """Quick mode (VITLIB_QUICK=1): CI and the book build use small, fast settings."""
    return os.environ.get("VITLIB_QUICK", "0") == "1"
