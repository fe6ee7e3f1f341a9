"""llm_rl layer of entropy-mechanism."""
