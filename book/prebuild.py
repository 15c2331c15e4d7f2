"""Get the book build ready: vendor the JavaScript it needs, and drop stale notebook results.

Run by `make book` before `jupyter-book build`, from the repository root:

    python book/prebuild.py

1. No CDN. The built pages must render maths and widgets with no network, so MathJax 3, the
   ipywidgets HTML manager and require.js are installed from the npm registry with
   `npm ci --prefix book` (exact versions in book/package.json, integrity hashes in
   book/package-lock.json, both committed) into book/node_modules/. Then only the files the
   pages load are copied (PACKAGES) into book/_build/vendor/_vendor/. _config.yml copies that
   folder to the site root (html_extra_path) and points mathjax_path and nb_ipywidgets_js at it.
   It is not under _static/ on purpose: Jupyter Book 1 adds a <script> for every .js file in
   _static, and the widgets would then render several times. `npm ci` runs only when
   node_modules does not match the lock file (it always starts from scratch). Our own small
   scripts (book/assets/) are copied there too.
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
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BOOK_DIR = REPO_ROOT / "book"
NODE_MODULES = BOOK_DIR / "node_modules"
BUILD_DIR = BOOK_DIR / "_build"
VENDOR_DIR = BUILD_DIR / "vendor" / "_vendor"
CACHE_DIR = BUILD_DIR / ".jupyter_cache"
HASH_FILE = BUILD_DIR / ".notebook-inputs.sha256"
ASSETS_DIR = BOOK_DIR / "assets"
# Written after a successful `npm ci`: the sha256 of the package-lock.json it installed.
NPM_STAMP = ".vitbook-lock.sha256"
# Written after the copy: a hash of the lock and PACKAGES, so that changing either copies again.
# (Beside the execution cache's hash, not in VENDOR_DIR: that folder is published as it is.)
VENDOR_STAMP = BUILD_DIR / ".vendored.sha256"

# folder under _vendor/ -> (npm package, {path in the package: path under _vendor/<folder>}).
# A path ending in "/" copies a whole folder. The versions are pinned in book/package.json.
PACKAGES: dict[str, tuple[str, dict[str, str]]] = {
    # All of es5/: the combined tex-chtml-full.js loads its fonts, and on demand the menu's
    # accessibility extensions, from files beside it.
    "mathjax": ("mathjax", {"es5/": "es5/", "LICENSE": "LICENSE"}),
    # embed-amd.js bundles every built-in widget; the font files beside it are Font Awesome,
    # loaded from the script's own folder for widget icons.
    "html-manager": ("@jupyter-widgets/html-manager", {"dist/": "", "package.json": "package.json"}),
    "requirejs": ("requirejs", {"require.js": "require.js", "package.json": "package.json"}),
}
# Not needed in the site: source maps and the non-AMD bundles (several MB).
SKIP_SUFFIXES = (".map", "/embed.js", "/libembed-amd.js", ".LICENSE.txt")

# What the notebooks' outputs depend on besides their own cells.
NOTEBOOK_INPUTS = ("vitlib", "configs")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def npm_ci(book_dir: Path = BOOK_DIR) -> bool:
    """`npm ci` in book_dir unless its node_modules was installed from the same lock file.

    Returns whether npm ran."""
    lock = book_dir / "package-lock.json"
    stamp = book_dir / "node_modules" / NPM_STAMP
    want = _sha256(lock)
    installed = all((book_dir / "node_modules" / package / "package.json").is_file()
                    for package, _ in PACKAGES.values())
    if installed and stamp.is_file() and stamp.read_text().strip() == want:
        return False
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            "book/prebuild.py: `npm` was not found. The book vendors MathJax and the widget "
            "manager from npm so that pages need no CDN; install Node.js 18+ with npm "
            "(Debian: apt-get install -y nodejs npm) and run `make book` again."
        )
    cmd = [npm, "ci", "--prefix", str(book_dir), "--no-audit", "--no-fund", "--ignore-scripts"]
    print(f"prebuild: {' '.join(['npm', *cmd[1:]])}", flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(
            "book/prebuild.py: `npm ci` failed (see above). Is the npm registry reachable, or "
            "are the packages in npm's cache? Do book/package.json and package-lock.json agree?"
        )
    stamp.write_text(want + "\n")
    return True


def copy_package(package_dir: Path, mapping: dict[str, str], out: Path) -> int:
    """Copy the mapped files of an installed npm package into `out`; returns how many."""
    n = 0
    for src, dst in mapping.items():
        if src.endswith("/"):
            files = sorted(p for p in (package_dir / src).rglob("*") if p.is_file())
            pairs = [(p, dst + p.relative_to(package_dir / src).as_posix()) for p in files]
        else:
            pairs = [(package_dir / src, dst)]
        for path, rel in pairs:
            if path.as_posix().endswith(SKIP_SUFFIXES):
                continue
            if not path.is_file():
                raise SystemExit(f"book/prebuild.py: {path} is missing; check PACKAGES against "
                                 "the versions in book/package.json")
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            n += 1
    return n


def vendor() -> None:
    """Install the pinned packages (if needed) and copy their mapped files into VENDOR_DIR."""
    npm_ci()
    want = hashlib.sha256(((NODE_MODULES / NPM_STAMP).read_text()
                           + json.dumps(PACKAGES, sort_keys=True)).encode()).hexdigest()
    present = all((VENDOR_DIR / name).is_dir() for name in PACKAGES)
    if present and VENDOR_STAMP.is_file() and VENDOR_STAMP.read_text().strip() == want:
        return
    for name, (package, mapping) in PACKAGES.items():
        out = VENDOR_DIR / name
        shutil.rmtree(out, ignore_errors=True)
        n = copy_package(NODE_MODULES / package, mapping, out)
        version = json.loads((NODE_MODULES / package / "package.json").read_text())["version"]
        print(f"prebuild: vendored {package}@{version} ({n} files) into {out.relative_to(REPO_ROOT)}")
    VENDOR_STAMP.write_text(want + "\n")


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
