"""simulators layer of entropy-mechanism."""
