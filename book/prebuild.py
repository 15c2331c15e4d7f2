"""Get the book build ready: vendor the JavaScript it needs, and drop stale notebook results.

Run by `make book` before `jupyter-book build`, from the repository root:

    python book/prebuild.py

1. No CDN. The built pages must render maths and widgets with no network, so MathJax 3, the
   ipywidgets HTML manager and require.js are fetched once from the npm registry (`npm pack`,
   which also uses npm's own cache) into book/_build/vendor/_vendor/. _config.yml copies that
   folder to the site root (html_extra_path) and points mathjax_path and nb_ipywidgets_js at it.
   It is not under _static/ on purpose: Jupyter Book 1 adds a <script> for every .js file in
   _static, and the widgets would then render several times. Nothing is downloaded when the
   pinned versions are already there. Our own small scripts (book/assets/) go there too.
2. Fresh results. jupyter-cache keys a notebook's cached outputs on its own code cells only, so
   a change in vitlib/ or configs/ would otherwise leave old outputs in the book. We keep a hash
   of those files beside the cache and drop the cache when it changes.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "book" / "_build"
VENDOR_DIR = BUILD_DIR / "vendor" / "_vendor"
CACHE_DIR = BUILD_DIR / ".jupyter_cache"
HASH_FILE = BUILD_DIR / ".notebook-inputs.sha256"
ASSETS_DIR = REPO_ROOT / "book" / "assets"

# name -> (npm spec, sha512 integrity from the registry, {path in tarball: path under _vendor/name})
# A path ending in "/" copies a whole folder. Bump a version together with its integrity
# (`npm view <spec> dist.integrity`).
PACKAGES: dict[str, tuple[str, str, dict[str, str]]] = {
    "mathjax": (
        "mathjax@3.2.2",
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        # All of es5/: the combined tex-chtml-full.js loads its fonts, and on demand the menu's
        # accessibility extensions, from files beside it.
        {"package/es5/": "es5/", "package/LICENSE": "LICENSE"},
    ),
    "html-manager": (
        "@jupyter-widgets/html-manager@1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        # embed-amd.js bundles every built-in widget; the font files beside it are Font Awesome,
        # loaded from the script's own folder for widget icons.
        {"package/dist/": "", "package/package.json": "package.json"},
    ),
    "requirejs": (
        "requirejs@2.3.8",
        "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        {"package/require.js": "require.js", "package/package.json": "package.json"},
    ),
}
# Not needed in the site: source maps and the non-AMD bundles (several MB).
SKIP_SUFFIXES = (".map", "/embed.js", "/libembed-amd.js", ".LICENSE.txt")

# What the notebooks' outputs depend on besides their own cells.
NOTEBOOK_INPUTS = ("vitlib", "configs")


def _npm_pack(spec: str, integrity: str, dest: Path) -> Path:
    """Download the package tarball for `spec` into `dest` and check its integrity."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            "book/prebuild.py: `npm` was not found. The book vendors MathJax and the widget "
            "manager from npm so that pages need no CDN; install Node.js 18+ with npm "
            "(Debian: apt-get install -y nodejs npm) and run `make book` again."
        )
    cmd = [npm, "pack", spec, "--json", "--prefer-offline", "--pack-destination", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"book/prebuild.py: `{' '.join(cmd[1:])}` failed (is the npm registry reachable, or "
            f"the package in npm's cache?):\n{proc.stderr.strip()}"
        )
    info = json.loads(proc.stdout)[0]
    if info.get("integrity") != integrity:
        raise SystemExit(
            f"book/prebuild.py: {spec} has integrity {info.get('integrity')}, expected {integrity}."
            " If you bumped the version, update PACKAGES in book/prebuild.py."
        )
    return dest / info["filename"]


def _extract(tarball: Path, mapping: dict[str, str], out: Path) -> int:
    """Copy the mapped members of `tarball` into `out`; returns how many files were written."""
    n = 0
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or member.name.endswith(SKIP_SUFFIXES):
                continue
            for src, dst in mapping.items():
                if src.endswith("/") and member.name.startswith(src):
                    rel = dst + member.name[len(src):]
                elif member.name == src:
                    rel = dst
                else:
                    continue
                target = (out / rel).resolve()
                if out.resolve() not in target.parents:  # a tarball must not write outside `out`
                    raise SystemExit(f"book/prebuild.py: refusing to extract {member.name}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as f:  # type: ignore[union-attr]
                    target.write_bytes(f.read())
                n += 1
                break
    return n


def vendor() -> None:
    """Make sure every package in PACKAGES is unpacked, at its pinned version, in VENDOR_DIR."""
    VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    for name, (spec, integrity, mapping) in PACKAGES.items():
        out = VENDOR_DIR / name
        stamp = out / ".vendored"
        if stamp.is_file() and stamp.read_text().strip() == spec:
            continue
        shutil.rmtree(out, ignore_errors=True)
        with tempfile.TemporaryDirectory() as tmp:
            tarball = _npm_pack(spec, integrity, Path(tmp))
            n = _extract(tarball, mapping, out)
        if n == 0:
            raise SystemExit(f"book/prebuild.py: nothing extracted from {spec}; check PACKAGES")
        stamp.write_text(spec + "\n")
        print(f"prebuild: vendored {spec} ({n} files) into {out.relative_to(REPO_ROOT)}")


def copy_own_assets() -> None:
    """Copy book/assets/ (our own scripts, e.g. widgets-setup.js) to VENDOR_DIR/vitbook/."""
    out = VENDOR_DIR / "vitbook"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(ASSETS_DIR, out)


def inputs_hash() -> str:
    """sha256 over the paths and contents of every file in NOTEBOOK_INPUTS."""
    h = hashlib.sha256()
    for folder in NOTEBOOK_INPUTS:
        for path in sorted((REPO_ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                h.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0")
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def drop_stale_cache() -> None:
    """Remove the execution cache when vitlib/ or configs/ changed since it was filled."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    new = inputs_hash()
    old = HASH_FILE.read_text().strip() if HASH_FILE.is_file() else None
    if old != new and CACHE_DIR.exists():
        print("prebuild: vitlib/ or configs/ changed, so the notebooks will be executed again")
        shutil.rmtree(CACHE_DIR)
    HASH_FILE.write_text(new + "\n")


def main() -> int:
    vendor()
    copy_own_assets()
    drop_stale_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
