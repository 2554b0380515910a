# gpumix developer entry points. `make test` is what CI runs (via .ci/run).
VENV   ?= .venv
PY     := $(VENV)/bin/python
GPUMIX := $(VENV)/bin/gpumix
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install test unit lint typecheck e2e bench demo demo-down clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## test: everything CI runs: lint, types, unit + integration tests (and e2e once it exists)
test: install lint typecheck unit

unit: install
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

typecheck: install
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench.solver

demo: install
	$(GPUMIX) profile --model meta-llama/Llama-3.1-8B-Instruct --gpu H100-80GB --gpu A100-80GB --gpu L40S --gpu L4 --gpu A10G -o table

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
