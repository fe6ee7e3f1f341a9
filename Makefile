# Two commands do everything on a fresh machine:  make reproduce  and  make test.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install reproduce reproduce-full test test-all lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Install the pinned CPU torch first when torch is absent: a bare `torch` requirement would pull
# a multi-GB CUDA build. Override with e.g. `make TORCH_SPEC='torch==2.9.1' install`.
$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# The main job: verify the theorems, run the quick experiment plan (resumable), draw the figures and
# write reproduce-quick/report.md. `make reproduce-full` runs the full plan (about an hour).
reproduce: $(STAMP)
	$(VENV)/bin/entropy-mech reproduce --profile quick --out reproduce-quick

reproduce-full: $(STAMP)
	$(VENV)/bin/entropy-mech reproduce --profile full --out reproduce-full

test: $(STAMP) lint
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -m "not slow and not gpu" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test-all: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q $(PYTEST_ARGS)

# Speed / memory benchmarks (each prints a ratio against a baseline measured in the same run); the bench
# extra adds TRL for benchmarks/trainer_throughput.py. One thread each: the machine has 2 cores.
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	@for f in benchmarks/*.py; do echo "== $$f"; OMP_NUM_THREADS=1 $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
