"""Research: strategy parameters, the walker, the optimiser and the executors that run trials (issue 14)."""
