"""The set-up files agree with each other, so conda and pip users get the same environment."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _requirement_names(lines: list[str]) -> dict[str, str]:
    """Map normalised package name -> full requirement, ignoring comments and local installs."""
    reqs = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0]
        reqs[name.lower().replace("_", "-")] = line.replace(" ", "")
    return reqs


def test_environment_yml_names_the_same_packages_as_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps, "environment.yml should pin python 3.11"
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    from_env = _requirement_names(pip_section)
    from_req = _requirement_names((ROOT / "requirements.txt").read_text().splitlines())
    assert from_env == from_req, (
        f"only in environment.yml: {sorted(set(from_env.items()) - set(from_req.items()))}; "
        f"only in requirements.txt: {sorted(set(from_req.items()) - set(from_env.items()))}"
    )


def test_requirements_cover_what_the_issue_asks_for():
    names = set(_requirement_names((ROOT / "requirements.txt").read_text().splitlines()))
    needed = {"torch", "torchvision", "numpy", "matplotlib", "jupyterlab", "jupytext", "ipywidgets",
              "nbval", "opencv-python-headless", "jupyter-book", "pytest", "tqdm", "pyyaml", "mlxtend"}
    assert needed <= names, f"missing from requirements.txt: {sorted(needed - names)}"


def test_only_ci_names_the_shared_mnist_folder():
    """CI's copy of MNIST is reached through $VITLIB_MNIST, set by .ci/run alone."""
    offenders = []
    for path in ROOT.rglob("*"):
        if not path.is_file() or any(p in path.parts for p in (".venv", ".git", "_build", "data")):
            continue
        if path.suffix not in {".py", ".ipynb", ".yml", ".yaml", ".toml", ".md", ".cfg", ""}:
            continue
        if path == ROOT / ".ci" / "run":
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if "shared/data" in text and path != Path(__file__):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"these files name CI's shared data folder: {offenders}"


def test_gitignore_keeps_data_out_of_git():
    ignore = (ROOT / ".gitignore").read_text().splitlines()
    assert "data/*" in ignore and "!data/README.md" in ignore and ".venv/" in ignore


def _ensure_chromium(tmp_path, env_extra, uid):
    """Run tools/ensure_chromium.sh with a PATH that has bash's basics but no chromium, and an `id`
    that reports `uid`."""
    import os
    import shutil
    import subprocess
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("bash", "env"):
        if not (bin_dir / tool).exists():
            os.symlink(shutil.which(tool), bin_dir / tool)
    (bin_dir / "id").write_text(f"#!{shutil.which('bash')}\necho {uid}\n")
    (bin_dir / "id").chmod(0o755)
    env = {"PATH": str(bin_dir), **env_extra}
    return subprocess.run([shutil.which("bash"), str(ROOT / "tools" / "ensure_chromium.sh")],
                          env=env, capture_output=True, text=True, timeout=60)


def test_make_test_names_the_fix_when_chromium_is_missing(tmp_path):
    r = _ensure_chromium(tmp_path, {}, uid=1000)  # not root: nothing is installed, one line says how
    assert r.returncode == 1 and "apt-get install -y chromium" in r.stderr and len(r.stderr.splitlines()) == 1
    r = _ensure_chromium(tmp_path, {"CHROMIUM": str(tmp_path / "nope")}, uid=1000)
    assert r.returncode == 1 and "CHROMIUM=" in r.stderr and "nope" in r.stderr


def test_make_test_accepts_a_chromium_it_can_find(tmp_path):
    fake = tmp_path / "bin" / "chromium"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    r = _ensure_chromium(tmp_path, {}, uid=1000)
    assert r.returncode == 0, r.stderr
    makefile = (ROOT / "Makefile").read_text()
    assert "test: browser $(STAMP)" in makefile and "bash tools/ensure_chromium.sh" in makefile
