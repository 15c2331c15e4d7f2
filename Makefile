# vit-book: two commands for a newcomer.
#   make test   install everything into .venv (first time only), then run every test
#   make book   install everything, then build the HTML book into book/_build/html
# Re-running either is fast: .venv is rebuilt only when requirements.txt or pyproject.toml change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test book book-test notebooks-sync bench clean help
.DEFAULT_GOAL := help

help:
	@echo "make test   - set up .venv if needed, then run all tests (quick mode)"
	@echo "make book   - set up .venv if needed, then build the book into book/_build/html"
	@echo "make bench  - run the speed benchmarks in benchmarks/"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Tests: the book build (which executes every notebook) and its browser check, then one pytest
# run over the unit tests and the six notebooks (nbval, quick mode). pytest exits non-zero when
# no test ran, so an empty run fails too.
test: $(STAMP)
	$(MAKE) --no-print-directory book-test
	VITLIB_QUICK=1 $(BIN)/python -m pytest --nbval-lax --nbval-cell-timeout=600 tests notebooks

# The book: the repository root is the book's source (so the chapters are notebooks/*.ipynb),
# book/_config.yml and book/_toc.yml configure it, and it lands in book/_build/html.
# prebuild.py vendors MathJax and the widget manager from npm (once) and drops cached notebook
# outputs when vitlib/ or configs/ changed; --all re-reads every page (notebooks come from the
# execution cache) so that -W sees every warning on every build.
book: $(STAMP)
	$(BIN)/python book/prebuild.py
	VITLIB_QUICK=1 $(BIN)/jupyter-book build . --config book/_config.yml --toc book/_toc.yml \
		--path-output book --all -W -n --keep-going

# Open every page of the built book in headless chromium and check it (book/check_book.py).
book-test: book
	$(BIN)/python book/check_book.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf book/_build .pytest_cache
