"""btkit-sqlite plugin (work in progress)."""
