# Every target sets itself up: it creates .venv and installs groundsup with its dev tools when
# settings.ini or setup.py changed (idempotent; only the package registries are needed).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.groundsup-installed
FLAGS ?=
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo test check docs check-docs clean-docs

install: $(STAMP)

$(STAMP): settings.ini setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing groundsup and its dev tools into $(VENV) (log: $(VENV)/install.log)"
	@$(PY) -m pip install --disable-pip-version-check -e ".[dev]" > $(VENV)/install.log 2>&1 \
		|| { grep -v 'WARNING: Location' $(VENV)/install.log | tail -40; exit 1; }
	@touch $(STAMP)

## The main job: `groundsup demo` (the GALS story on the shipped world) into groundsup-demo/.
## Options go through DEMO_ARGS, e.g. `make demo DEMO_ARGS="--device cuda"`.
demo: $(STAMP)
	@$(VENV)/bin/groundsup demo $(DEMO_ARGS)

## The whole test suite: notebooks/library in sync, notebooks clean, nbdev_test, pytest.
## Include flagged tests with e.g. `make test FLAGS="slow gpu"`.
test: $(STAMP)
	@FLAGS="$(FLAGS)" bash tools/test.sh

## Docs site in _docs/ (quarto when installed, else Sphinx + myst-nb over nbdev's processed notebooks) and README.md.
docs: $(STAMP)
	@$(PY) tools/docs.py

## The built site in headless Chromium: links, anchors, images, search; screenshots in tests/artifacts/.
check-docs: $(STAMP)
	@$(PY) tools/check_site.py _docs --artifacts tests/artifacts

clean-docs:
	rm -rf _docs _proc
