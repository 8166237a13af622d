# One command for each job a newcomer has: `make run` (the demo) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench screenshot clean

# `make run` installs only what the bridge needs; the test tools come with `make test`.
$(BIN)/mqttbridge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/mqttbridge pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/mqttbridge  ## embedded broker + bridge + example routes + a simulated mixed fleet
	$(BIN)/mqttbridge run --config config.yaml --demo

test: $(VENV)/.test-deps  ## unit tests, then integration tests (private Mosquitto and Redis)
	$(BIN)/pytest -q -m "not integration"
	$(BIN)/pytest -q -m integration

lint: $(VENV)/.test-deps
	$(BIN)/ruff check bridge consumers devices tests bench harness
	rm -rf build/typecheck && mkdir -p build/typecheck
	cp -as $(CURDIR)/bridge build/typecheck/mqttbridge
	cp -as $(CURDIR)/consumers build/typecheck/mqttbridge/consumers
	cp -as $(CURDIR)/devices build/typecheck/mqttbridge/devices
	$(BIN)/mypy

bench: $(VENV)/.test-deps  ## the benchmarks recorded in docs/benchmarks.md
	$(BIN)/python -m bench

screenshot: $(VENV)/.test-deps  ## docs/dashboard.png: the dashboard example in headless Chromium
	$(BIN)/python -m bench.screenshot

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
