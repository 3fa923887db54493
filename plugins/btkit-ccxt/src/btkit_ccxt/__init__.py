"""btkit-ccxt plugin (work in progress)."""
