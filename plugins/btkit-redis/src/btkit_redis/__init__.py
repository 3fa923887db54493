"""btkit-redis plugin (work in progress)."""
