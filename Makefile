# lora-agnews: `make` lists the targets. Every target sets itself up on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PROFILE ?= demo
PYTHON_BIN ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
TEX_PACKAGES := texlive-latex-base texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended \
	texlive-science tex-gyre lmodern latexmk poppler-utils
PYTEST_ARGS ?=
# parameter overrides for the pipeline targets, e.g. ARGS="-p data ../shared/agnews-subset -p epochs 2"
ARGS ?=

.PHONY: help setup tex browser all notebooks book report reproduce site test test-slow test-all test-fast bench clean distclean

help: ## list the targets
	@echo "lora-agnews (PROFILE=$(PROFILE); profiles: $$(ls configs | sed 's/.yaml//' | tr '\n' ' '))"
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP) tex browser ## create .venv with the pinned packages, install TeX and Chromium (apt) if missing

$(STAMP): pyproject.toml
	@command -v $(PYTHON_BIN) >/dev/null || { echo "error: $(PYTHON_BIN) not found; set PYTHON_BIN=/path/to/python3.11"; exit 1; }
	@echo "[setup] creating $(VENV) and installing the pinned packages (a few minutes the first time)"
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet torch==2.13.0
	@$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)
	@echo "[setup] Python environment ready"

tex: ## install the TeX toolchain from Debian (skipped where apt is not available)
	@missing=""; for p in $(TEX_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "[setup] apt-get not available: install a TeX distribution with latexmk and pdftotext yourself (skipping)"; exit 0; fi; \
	SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	echo "[setup] installing TeX from Debian:$$missing (about 90 s)"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	  && echo "[setup] TeX ready"

browser: ## install Debian's Chromium for the book's browser test (skipped where apt is not available)
	@if [ -x /usr/bin/chromium ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "[setup] apt-get not available: the book's browser test will skip (install Chromium as /usr/bin/chromium to run it)"; exit 0; fi; \
	SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	echo "[setup] installing Chromium from Debian (for the book's browser test, about a minute)"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
	  && echo "[setup] Chromium ready"

all: setup ## the main command: notebooks (papermill) -> book -> report for PROFILE (overrides: ARGS="-p KEY VALUE ...")
	$(PY) -m lora_agnews run --profile $(PROFILE) $(ARGS)

notebooks: setup ## execute the notebooks for PROFILE into build/PROFILE/notebooks
	$(PY) -m lora_agnews run --profile $(PROFILE) --steps notebooks $(ARGS)

book: setup ## build the HTML book from the executed notebooks (build/PROFILE/book)
	$(PY) -m lora_agnews run --profile $(PROFILE) --steps book $(ARGS)

report: setup ## build the LaTeX report PDF from results/PROFILE (build/PROFILE/report)
	$(PY) -m lora_agnews run --profile $(PROFILE) --steps report $(ARGS)

reproduce: setup ## retrain every run of PROFILE here (archive off), compare with archive/PROFILE; book and report get "Reproduced on this machine"
	$(PY) -m lora_agnews reproduce --profile $(PROFILE) $(ARGS)

# The published site (.github/workflows/book.yml; book/guide/publishing.md): the books of SITE_RESTORED made from
# archive/<profile> alone (--restore-only: a run the archive lacks stops the build, naming it, instead of training
# for hours), the books of SITE_TRAINED computed here (demo: minutes on the shipped sample), and a landing page.
# SITE_ARGS_<profile>: the -p overrides that profile's archive was made with (an entry matches its own data only).
SITE_RESTORED ?= cpu base
SITE_TRAINED ?= demo

site: setup ## the published site in build/site: cpu and base books from the archive (never trained), the demo book, a landing page
	$(foreach p,$(SITE_RESTORED),$(PY) -m lora_agnews run --profile $(p) --steps notebooks,book --restore-only $(SITE_ARGS_$(p)) &&) true
	$(foreach p,$(SITE_TRAINED),$(PY) -m lora_agnews run --profile $(p) --steps notebooks,book $(SITE_ARGS_$(p)) &&) true
	$(PY) -m lora_agnews site $(SITE_RESTORED) $(SITE_TRAINED)

test: setup ## the README's test command: unit tests, the smoke pipeline end to end and the browser test (not the slow tier)
	$(PY) -m pytest -m "not slow" -n 2 --dist loadfile $(PYTEST_ARGS)

test-slow: setup ## the slow tier: fresh processes, torchrun/accelerate launchers, kill -9 resumes, compiled training (CI runs it after make test)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-all: setup ## every test (make test + make test-slow in one run; GPU tests skip without one)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup ## unit tests only (no slow, no pipeline), about a minute
	$(PY) -m pytest -m "not slow and not pipeline" $(PYTEST_ARGS)

BENCH_DATA ?= ../shared/agnews-subset/test.csv
BENCH_TOKENIZER ?= ../shared/tokenizers/roberta-base

bench: setup ## CPU training/evaluation throughput vs common practice (BENCH_DATA=AG News CSV, BENCH_TOKENIZER=roberta-base tokenizer dir)
	$(PY) benchmarks/train_throughput.py --eval --configs baseline,dynamic,dynamic_bf16,project,trainer \
		--data $(BENCH_DATA) --tokenizer $(BENCH_TOKENIZER) --json results/benchmarks/cpu.json

clean: ## remove results and build outputs (keeps .venv)
	rm -rf results build

distclean: clean ## also remove the virtual environment
	rm -rf $(VENV)
