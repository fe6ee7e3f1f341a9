"""figures layer of entropy-mechanism."""
