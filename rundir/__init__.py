"""The run-directory format, shared by every writer and reader of runs.

- :mod:`rundir.files`: atomic writes, the resolved config and environment record of a run;
- :mod:`rundir.logs`: the one reader of run logs (``metrics.jsonl`` and other JSONL, CSV, TensorBoard);
- :mod:`rundir.diagnostics_files`: per-state entropy-dynamics arrays, ``diagnostics/step_<k>.npz``;
- :mod:`rundir.finished`: finished-run detection (``DONE.json``).

It sits at the bottom of the layers beside ``theory`` and imports none of the package's other folders.
"""
