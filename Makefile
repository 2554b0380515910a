# gpumix developer entry points. `make test` is what CI runs (via .ci/run).
VENV   ?= .venv
PY     := $(VENV)/bin/python
GPUMIX := $(VENV)/bin/gpumix
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install test unit lint typecheck e2e cluster-bins bench calibrate crds wheel \
        demo demo-down clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

## install: a virtual environment in .venv with gpumix and its dev tools
install: $(VENV)/.installed

## test: every tier CI runs: lint, types, unit + integration (kmock), end-to-end (real cluster)
test: lint typecheck unit e2e

## unit: unit and integration tests (no cluster needed)
unit: install
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check src tests e2e bench
	$(VENV)/bin/ruff format --check src tests e2e bench

typecheck: install
	$(VENV)/bin/mypy

## cluster-bins: build (or reuse) kube-apiserver, etcd, scheduler, controller-manager, kwok, helm
cluster-bins: install
	$(GPUMIX) dev-cluster build

## e2e: end-to-end tests against a real local control plane with simulated GPU nodes
e2e: cluster-bins
	$(PY) -m pytest -q -p no:cacheprovider -s e2e

## bench: solver, router and operator-scale benchmarks -> bench/results/{solver,router,operator}.md
bench: install
	$(PY) -m bench.solver
	$(PY) -m bench.router
	$(PY) -m bench.operator

## calibrate: performance model vs the H200 and published vLLM measurements (docs/perf-model.md)
calibrate: install
	$(PY) -m gpumix.perf.calibration

## crds: regenerate crds/ and the chart's CRDs from the resource models
crds: install
	$(PY) -m gpumix.resources.crd crds/
	$(PY) -m gpumix.resources.crd_chart charts/gpumix/templates/crds/

## wheel: the wheel the container image installs
wheel: install
	$(PY) -m pip wheel -q --no-deps -w dist .

## demo: dev cluster + operator + examples, left running (stop with `make demo-down`)
demo: cluster-bins
	hack/demo.sh

demo-down:
	hack/demo-down.sh

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache
