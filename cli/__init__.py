"""The ``entropy-mech`` command line: :mod:`cli.main` dispatches to one module per subcommand."""
