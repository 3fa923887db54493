"""btkit-binance-futures plugin (work in progress)."""
