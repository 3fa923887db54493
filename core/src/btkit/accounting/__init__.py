"""Money: the wallet, position sizing, the mark-to-market equity curve and portfolio statistics.

See docs/wallet-and-sizing.md. Lower layers only: nothing here imports the engine, the CLI or reporting.
"""

from btkit.accounting.sizing import SizingRefused, SizingRequest, SizingSpec
from btkit.accounting.wallet import Wallet, WalletSettings, get_wallet, reset_wallet, set_wallet

__all__ = (
    "SizingRefused",
    "SizingRequest",
    "SizingSpec",
    "Wallet",
    "WalletSettings",
    "get_wallet",
    "reset_wallet",
    "set_wallet",
)
