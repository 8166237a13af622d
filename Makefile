# One command for each job a newcomer has: `make run` (the demo) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/mqttbridge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/mqttbridge  ## embedded broker + bridge + example routes + three simulated devices
	$(BIN)/mqttbridge run --config config.yaml --demo

test: $(BIN)/mqttbridge  ## unit and integration tests (private Mosquitto and Redis processes)
	$(BIN)/pytest -q

lint: $(BIN)/mqttbridge
	$(BIN)/ruff check bridge consumers devices tests bench
	$(BIN)/mypy

bench: $(BIN)/mqttbridge  ## the benchmarks recorded in docs/benchmarks.md
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
