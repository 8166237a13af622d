# One command for each job a newcomer has: `make run` (the demo) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run dashboard test lint bench bench-storage screenshot clean

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

# The Django example (examples/dashboard/README.md): migrate, then one process serving the page
# (HTTP and WebSocket), the embedded broker and the bridge, and beside it a few simulated
# devices, stopped with it. Ctrl-C stops both.
DASHBOARD_HTTP ?= 127.0.0.1:8000
DASHBOARD_MQTT ?= 127.0.0.1:18831
DASHBOARD_DEVICES ?= 5
# The devices start once the embedded broker listens (the first start compiles a lot).
export LISTENING := import socket, sys; socket.create_connection(tuple(sys.argv[1].rsplit(":", 1)), 1)

$(VENV)/.dashboard-deps: $(BIN)/mqttbridge pyproject.toml
	$(BIN)/pip install --quiet -e '.[dashboard]'
	touch $@

dashboard: $(VENV)/.dashboard-deps  ## the Django dashboard: http://127.0.0.1:8000/ with 5 simulated devices
	cd examples/dashboard && $(CURDIR)/$(BIN)/python manage.py migrate --no-input -v 1
	cd examples/dashboard || exit 1; export DASHBOARD_MQTT_LISTEN=$(DASHBOARD_MQTT); \
	{ until $(CURDIR)/$(BIN)/python -c "$$LISTENING" $(DASHBOARD_MQTT) 2>/dev/null; do sleep 0.5; done; \
	  exec $(CURDIR)/$(BIN)/mqttbridge simulate --broker mqtt://$(DASHBOARD_MQTT) \
	    --profile generic --devices $(DASHBOARD_DEVICES) --plain; } & sim=$$!; \
	trap 'kill $$sim 2>/dev/null' EXIT INT TERM; \
	$(CURDIR)/$(BIN)/python manage.py mqttbridge run --http $(DASHBOARD_HTTP)

test: $(VENV)/.test-deps  ## unit tests, then integration tests (private Mosquitto and Redis)
	$(BIN)/pytest -q -m "not integration"
	$(BIN)/pytest -q -m integration

lint: $(VENV)/.test-deps
	$(BIN)/ruff check bridge consumers devices tests bench harness examples
	rm -rf build/typecheck && mkdir -p build/typecheck
	cp -as $(CURDIR)/bridge build/typecheck/mqttbridge
	cp -as $(CURDIR)/consumers build/typecheck/mqttbridge/consumers
	cp -as $(CURDIR)/devices build/typecheck/mqttbridge/devices
	$(BIN)/mypy
	cd examples/dashboard && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml \
	    --explicit-package-bases --exclude migrations dashboard telemetry

bench: $(VENV)/.test-deps  ## the benchmarks recorded in docs/benchmarks.md
	$(BIN)/python -m bench

bench-storage: $(VENV)/.test-deps  ## readings stored per second, BatchWriter vs one INSERT each
	$(BIN)/python -m bench.storage

screenshot: $(VENV)/.test-deps  ## docs/dashboard.png: the dashboard example in headless Chromium
	$(BIN)/python -m bench.screenshot

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
