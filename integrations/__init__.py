"""Where users already train: the package's objectives and diagnostics inside TRL (:mod:`integrations.trl`)
and verl (:mod:`integrations.verl`). Each module imports its engine lazily, so neither is a dependency of
the package itself."""
