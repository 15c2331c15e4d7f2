"""JupyterLab opens a chapter's paired .py as a notebook on double-click, with MyST rendered.

A real JupyterLab (from this environment) is started on 127.0.0.1 and driven in headless
chromium by Playwright. What it checks:

- jupyter/overrides.json is installed in the environment (the Makefile's install step and
  `make lab` copy it to <sys.prefix>/share/jupyter/lab/settings/overrides.d/vit-book.json) and
  the server serves its Document Manager default: .py files open with "Jupytext Notebook";
- a double-click on 01_dataset.py in the file browser opens a notebook (code and markdown
  cells), not the text editor;
- jupyterlab-myst renders the markdown: the `{cite:p}` role of the first cell becomes a
  citation element and no raw `{cite:...}` text is left. (jupyterlab-myst does not read
  book/references.bib, so it shows the citation key flagged "Citation Not Found", not
  "Dosovitskiy et al., 2021"; only the book resolves them.)

Nothing of the developer's is used or touched: the server gets its own config, data, runtime,
settings and workspace folders, and serves a copy of the chapter (JupyterLab marks a notebook
modified as soon as its kernel connects, and an autosave must never rewrite notebooks/).
Nothing leaves 127.0.0.1. A screenshot goes to the test's tmp_path and /tmp/lab_doubleclick.png.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
CHAPTER = "01_dataset"
OVERRIDES_SRC = REPO / "jupyter" / "overrides.json"
OVERRIDES_DST = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "vit-book.json"
DOCMANAGER = "@jupyterlab/docmanager-extension:plugin"
SCREENSHOT_COPY = Path("/tmp/lab_doubleclick.png")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
SERVER_START_S = 60  # the server is usually up in ~5 s; a busy 2-core machine needs more
UI_TIMEOUT_MS = 30_000  # any single wait in the browser


def find_chromium() -> str:
    """The system chromium ($CHROMIUM, else chromium on PATH), or fail naming the fix."""
    for c in [os.environ.get("CHROMIUM", "")] + [
            shutil.which(n) or "" for n in ("chromium", "chromium-browser", "google-chrome")]:
        if c and Path(c).is_file():
            return c
    pytest.fail("no chromium found: install it with `apt-get install -y chromium` "
                "(or set CHROMIUM=/path/to/chromium); never `playwright install`", pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


class Lab:
    def __init__(self, url: str, token: str, root: Path, log: Path):
        self.url, self.token, self.root, self.log = url, token, root, log

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """A JupyterLab server on a copy of the chapter, with private Jupyter folders."""
    if not OVERRIDES_DST.is_file() or (
            json.loads(OVERRIDES_DST.read_text()) != json.loads(OVERRIDES_SRC.read_text())):
        pytest.fail(f"{OVERRIDES_DST} is missing or differs from jupyter/overrides.json. Fix: "
                    f"`make lab`, or: install -D -m 644 {OVERRIDES_SRC.relative_to(REPO)} "
                    f"{OVERRIDES_DST}", pytrace=False)

    tmp_path = tmp_path_factory.mktemp("lab")
    root = tmp_path / "notebooks"
    root.mkdir()
    for name in (f"{CHAPTER}.py", f"{CHAPTER}.ipynb"):
        shutil.copy2(REPO / "notebooks" / name, root / name)
    shutil.copy2(REPO / "jupytext.toml", root / "jupytext.toml")

    home = tmp_path / "jupyter"
    settings = home / "settings"
    # No news pop-up over the screenshot, and no request for news or updates.
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ,
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), IPYTHONDIR=str(home / "ipython"),
               JUPYTER_PLATFORM_DIRS="1")
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_CONFIG_PATH", None)

    token, port = secrets.token_hex(16), _free_port()
    log = tmp_path / "jupyter-lab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--allow-root",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class="
           "jupyterlab.handlers.announcements.NeverCheckForUpdate"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token, root, log)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                _get_json(f"{server.url}/api/status?token={token}")
                break
            except (OSError, urllib.error.URLError, ValueError):
                if proc.poll() is not None:
                    pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab not up after {SERVER_START_S} s:\n{server.log_tail()}")
                time.sleep(0.25)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()  # the server shuts its kernels down on SIGTERM
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the server and its kernel
                proc.wait(timeout=10)


def test_the_overrides_reach_the_server(lab: Lab):
    """The Document Manager's default viewer for python files is jupytext's notebook."""
    data = _get_json(f"{lab.url}/lab/api/settings/{DOCMANAGER}?token={lab.token}")
    default = data["schema"]["properties"]["defaultViewers"]["default"]
    assert default.get("python") == "Jupytext Notebook", (
        f"the server's defaultViewers default is {default}; jupyter/overrides.json did not apply")


def test_double_click_opens_the_py_as_a_notebook_with_myst_rendered(lab: Lab, tmp_path: Path):
    # Playwright's sync API refuses a thread with a running asyncio loop, and pytest-playwright's
    # session (the book's page checks) leaves one in the main thread: drive the browser from our own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(_double_click_check, lab, tmp_path).result()


def _double_click_check(lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    shot = tmp_path / "lab_doubleclick.png"
    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
                                     timeout=UI_TIMEOUT_MS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.set_default_navigation_timeout(UI_TIMEOUT_MS)

            def local_only(route):  # the lab must work offline: block and record the rest
                if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()
            page.route("**/*", local_only)

            page.goto(f"{lab.url}/lab?token={lab.token}")
            item = page.locator(".jp-DirListing-item").filter(
                has=page.locator(".jp-DirListing-itemText", has_text=f"{CHAPTER}.py"))
            item.wait_for()
            try:
                item.dblclick()

                tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
                tab.filter(has_text=f"{CHAPTER}.py").wait_for()
                # The current main-area widget: a notebook, not the text editor.
                current = page.locator(".jp-MainAreaWidget:not(.lm-mod-hidden)")
                current.locator(".jp-Notebook, .jp-FileEditor").first.wait_for()
                assert current.count() == 1
                assert current.locator(".jp-FileEditor").count() == 0, (
                    f"a double-click opened {CHAPTER}.py in the text editor, not as a notebook: "
                    f"the Document Manager's defaultViewers (jupyter/overrides.json) did not apply")
                assert "jp-NotebookPanel" in (current.get_attribute("class") or "")
                # The cells are attached progressively: wait for a few of each kind.
                current.locator(".jp-CodeCell").nth(4).wait_for(state="attached")
                current.locator(".jp-MarkdownCell").nth(4).wait_for(state="attached")

                # jupyterlab-myst renders the first markdown cell; its {cite:p} becomes a citation.
                first = current.locator(".jp-MarkdownCell").first
                first.locator(".myst").wait_for()
                cite = first.locator(".cite-group")
                cite.first.wait_for()
                assert "dosovitskiy2021vit" in cite.first.text_content()
                rendered = current.locator(".jp-MarkdownCell .myst").all_inner_texts()
                assert rendered and not [t for t in rendered if "{cite" in t], "raw MyST role left"
            finally:
                page.screenshot(path=str(shot))
                shutil.copyfile(shot, SCREENSHOT_COPY)
        finally:
            browser.close()
    assert not outside, f"JupyterLab tried to load from outside 127.0.0.1: {outside[:5]}"
