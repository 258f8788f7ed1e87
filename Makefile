# The two commands of the README:
#   make demo   set up what is missing, then run the pipeline end to end on the synthetic market
#   make test   set up what is missing, then run every test
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export GX_ANALYTICS_ENABLED := False
export PYSPARK_PYTHON := $(CURDIR)/$(VENV)/bin/python

.PHONY: setup demo test test-slow test-failover lint test-cpp test-fast screenshots bench-features bench-inference bench-streaming bench-e2e bench-execution bench-model-real bench-model-study bench-online clean

setup:
	@bash infra/setup.sh

demo: setup
	$(VENV)/bin/hft demo

test: setup lint test-cpp
	$(VENV)/bin/pytest -q -m "not slow and not failover"

# The long end-to-end scenarios (the UI tests in a real browser, an alert from Prometheus to the kill switch, two
# "hosts", the real-data sample, hft demo):
# CI runs them after `make test` (.ci/run), keeping `make test` under 20 minutes on 2 cores.
test-slow: setup
	$(VENV)/bin/pytest -q -m slow

# Redundancy and failover: kill -9 of a Kafka partition leader (3 brokers), ... under a running stream.
# CI runs them after `make test-slow` (.ci/run).
test-failover: setup
	$(VENV)/bin/pytest -q -m failover

# Static checks: ruff (whole repository), mypy (src/hft), clang-format (execution/, style in its .clang-format).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	clang-format --dry-run --Werror $$(git ls-files 'execution/*.cpp' 'execution/*.hpp')

# The executor's GoogleTest suite (CMake + ctest), built under build/execution.
test-cpp: setup
	cmake -S execution -B build/execution -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build/execution -j2
	ctest --test-dir build/execution --output-on-failure

# Unit tests only (no Airflow end-to-end run).
test-fast: setup
	$(VENV)/bin/pytest -q -m "not integration"

# Retake the README's UI screenshots (docs/images) with the browser tests.
screenshots: setup
	HFT_UPDATE_SCREENSHOTS=1 $(VENV)/bin/pytest -q tests/integration/test_ui_browser.py

bench-features: setup
	$(VENV)/bin/python bench/features.py

bench-inference: setup
	$(VENV)/bin/python bench/inference.py

bench-streaming: setup
	$(VENV)/bin/python bench/streaming.py

bench-e2e: setup
	$(VENV)/bin/python bench/e2e.py

bench-execution: setup
	$(VENV)/bin/python bench/execution.py

bench-model-real: setup
	$(VENV)/bin/python bench/model_real.py

# Why the network might lose to logistic regression: one setting changed at a time, on the synthetic market and
# the shared real sample, each run in MLflow (about 20 minutes on 2 cores).
bench-model-study: setup
	$(VENV)/bin/python bench/model_study.py

# Daily retraining against a frozen champion after a synthetic regime change (about 5 minutes on 2 cores).
bench-online: setup
	$(VENV)/bin/python bench/online_learning.py

clean:
	rm -rf var build .pytest_cache
