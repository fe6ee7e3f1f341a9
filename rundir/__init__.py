"""The run-directory format, shared by every writer and reader of runs.

- :mod:`rundir.files`: atomic writes, the resolved config and environment record of a run;
- :mod:`rundir.records`: the one reader of JSON-lines logs (``metrics.jsonl``), torn last line tolerated;
- :mod:`rundir.logs` and :mod:`rundir.series`: (step, H, R) series from training logs (ours, CSV, TensorBoard,
  verl, TRL / transformers ``trainer_state.json``) for the law fit;
- :mod:`rundir.diagnostics_files`: per-state entropy-dynamics arrays, ``diagnostics/step_<k>.npz``;
- :mod:`rundir.finished`: finished-run detection (``DONE.json``);
- :mod:`rundir.ownership`: a run folder is owned by one run (claim, lock, config changes).

It sits at the bottom of the layers beside ``theory`` and imports none of the package's other folders.
"""
