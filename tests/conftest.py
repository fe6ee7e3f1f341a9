"""Shared pytest configuration: Hypothesis profiles, markers, determinism."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# `ci` is derandomised (same examples every run); `dev` explores. Select with HYPOTHESIS_PROFILE.
settings.register_profile(
    "ci", derandomize=True, max_examples=60, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Tests use tiny tensors: one intra-op thread avoids OpenMP oversubscription, which slows a loaded
# 2-core machine by 10x or more, and keeps results independent of the core count.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
