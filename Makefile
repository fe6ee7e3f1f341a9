# Two commands do everything on a fresh machine:  make reproduce  and  make test.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
# verl for the integrations.verl tests: verl itself with --no-deps (its full set pulls vLLM-era pins, wandb,
# ...) plus what `verl.trainer.ppo.core_algos` imports on CPU; none of these pulls another torch.
VERL_SPEC  ?= verl==0.9.1
VERL_DEPS  ?= 'ray>=2.41' 'tensordict>=0.8,<=0.10,!=0.9.0' omegaconf hydra-core codetiming dill orjson accelerate
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install reproduce reproduce-full validate-gpu test test-all lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Install the pinned CPU torch first when torch is absent: a bare `torch` requirement would pull
# a multi-GB CUDA build. Override with e.g. `make TORCH_SPEC='torch==2.9.1' install`.
$(STAMP): pyproject.toml Makefile | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q $(VERL_DEPS)
	$(PY) -m pip install -q --no-deps "$(VERL_SPEC)"
	@touch $(STAMP)

install: $(STAMP)

# The main job: verify the theorems, run the quick experiment plan (resumable), draw the figures and
# write reproduce-quick/report.md. `make reproduce-full` runs the full plan (about an hour).
reproduce: $(STAMP)
	$(VENV)/bin/entropy-mech reproduce --profile quick --out reproduce-quick

reproduce-full: $(STAMP)
	$(VENV)/bin/entropy-mech reproduce --profile full --out reproduce-full

# The scaled validation on one CUDA GPU (sized for <= 8 min on an H100/H200 from an empty cache): a
# ~104M-parameter warm start, GRPO / KL-Cov / Clip-Cov with diagnostics, the diagnostics-cost and
# trainer-vs-TRL benchmarks; report.md and gpu_summary.json in reproduce-gpu/. Resumable. Its CPU twin,
# `entropy-mech reproduce --profile gpu --tiny`, runs in `make test`.
validate-gpu: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	@$(PY) -c "import torch, sys; torch.cuda.is_available() or sys.exit('validate-gpu: no CUDA device (or a CPU-only torch)')"
	$(VENV)/bin/entropy-mech reproduce --profile gpu --out reproduce-gpu --jobs 3

test: $(STAMP) lint
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -m "not slow and not gpu" $(PYTEST_ARGS)
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q tests/test_reproduce_gpu_profile.py::test_reproduce_gpu_tiny_end_to_end

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
