from btkit.testing import btkit_clean, btkit_plugin, candle_exchange, hook_recorder  # noqa: F401
