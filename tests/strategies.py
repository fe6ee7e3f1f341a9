"""Hypothesis strategies shared by the property tests (docs/theory.md §4 conventions)."""

import numpy as np
import torch
from hypothesis import strategies as st

F64 = torch.float64


@st.composite
def logits(draw, min_n=2, max_n=64, batch=False):
    """z = σ·N(0, 1) with σ ∈ [0.05, 8] (float64), or uniform in [−20, 20]; optional batch dim."""
    n = draw(st.integers(min_n, max_n))
    b = draw(st.integers(1, 4)) if batch else None
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    shape = (b, n) if batch else (n,)
    if draw(st.booleans()):
        sigma = draw(st.floats(0.05, 8.0))
        z = sigma * rng.standard_normal(shape)
    else:
        z = rng.uniform(-20.0, 20.0, shape)
    return torch.tensor(z, dtype=F64)


@st.composite
def vectors_like(draw, z, low=-5.0, high=5.0):
    """A direction / advantage vector of z's shape with entries in [low, high]."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    return torch.tensor(rng.uniform(low, high, tuple(z.shape)), dtype=F64)


steps = st.floats(1e-4, 1.0)
