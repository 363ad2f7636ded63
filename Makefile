# Two user-facing targets: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
EXTRAS ?= test
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pixelrt-installed-$(TORCH_VERSION)

.PHONY: demo test
demo: $(STAMP)
	$(VENV)/bin/pixelrt demo

test: $(STAMP)
	$(PY) -m pytest -q

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)
