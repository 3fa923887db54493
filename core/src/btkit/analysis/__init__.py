"""Robustness checks of strategies (docs/checks.md): look-ahead, recursive warm-up, intrabar ambiguity."""
