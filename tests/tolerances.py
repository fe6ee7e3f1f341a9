"""Every numerical tolerance used by the tests, in one place, with where it comes from."""

# float64 identities that are exact up to rounding (docs/theory.md §4: 1e-10 .. 1e-12)
ATOL_F64 = 1e-10
RTOL_F64 = 1e-10
EXACT_F64 = 1e-12
# central-difference gradient (h = 1e-6) of the entropy, docs/theory.md §4.1 (observed ~1e-9)
FD_GRAD_ATOL = 1e-6
# second-derivative finite difference (h = 1e-3), docs/theory.md §4.5
FD_HESS_RTOL = 1e-4
# slack added to the rigorous first-order bound, docs/theory.md §4.3
BOUND_SLACK = 1e-12
# error-ratio windows for halving the step: quadratic (docs/theory.md §4.4) and cubic (§4.5)
QUADRATIC_RATIO = (3.5, 4.5)
CUBIC_RATIO = (6.0, 10.0)
# float32 inputs against the float64 reference (relative to the scale of the quantity)
ATOL_F32 = 1e-4
RTOL_F32 = 1e-4
# Monte-Carlo checks: how many standard errors an estimate may sit from its target
MC_SIGMAS = 5.0
# entropy-performance law (theory/law.py): OLS on exp(H) recovers noiseless (a, b) up to rounding
# amplified by the conditioning of exp(H) over a spread >= 0.05 nats
LAW_RECOVERY_ATOL = 1e-8
# 95% bootstrap-CI coverage over 400 seeded repetitions: the studentized residual bootstrap gives
# 0.935-0.965 at n = 5..40 points (600-rep check); binomial sd at 400 reps is ~0.011
LAW_CI_COVERAGE_WINDOW = (0.90, 0.985)
# simulators (tests/test_sim_*.py)
# entropy-regularised NPG bandit contraction z_t − r/τ = (1 − ητ)^t (z_0 − r/τ),
# docs/theory.md §4.15 (1e-9 relative)
SIM_CONTRACTION_RTOL = 1e-9
# exact-PG bandit Θ(1/t) (docs/theory.md §4.17): t·gap_t at the end of a run is at least this fraction of its
# value at mid-run (an exponential rate would drive the ratio to ~0; Θ(1/t) keeps it near 1)
SIM_MEI_TAIL_RATIO = 0.5
