# Two commands do everything on a fresh machine:  make reproduce  and  make test.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install reproduce test test-all bench clean

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

# The main job. Until `entropy-mech reproduce` lands (issue 7) it verifies every theorem numerically
# and symbolically.
reproduce: $(STAMP)
	$(VENV)/bin/entropy-mech verify --symbolic

test: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -m "not slow and not gpu" $(PYTEST_ARGS)

test-all: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
