"""The reproduce pipeline behind ``entropy-mech reproduce``:
experiment plans (:mod:`reproduce.plans`), the job
runner (:mod:`reproduce.experiments`), the claims table (:mod:`reproduce.claims`), the report writer
(:mod:`reproduce.report`) and the pipeline tying them together (:mod:`reproduce.pipeline`)."""
