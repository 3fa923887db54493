"""Deterministic client order ids derived from the engine's client order id."""

from __future__ import annotations

import hashlib

#: Every id this plugin sends starts with this prefix (as do the engine's ids), so orders of the bot can be
#: told apart from orders placed by hand or by other software on the same account.
PREFIX = "btk"


def derive_id(base: str, tag: str, *parts: object) -> str:
    """A child id of ``base``: ``btk`` + 22 hex digits of sha256(base, tag, parts) + ``-`` + tag.

    At most 36 characters of ``[A-Za-z0-9-]`` (valid as Binance ``newClientOrderId`` and ``clientAlgoId``);
    the same inputs always give the same id, so a retry after a crash finds what the first try sent.
    """
    clean = "".join(ch for ch in tag if ch.isalnum())[:10] or "x"
    material = "|".join([base, clean, *(str(p) for p in parts)])
    digest = hashlib.sha256(material.encode("utf-8")).hexdigest()[:22]
    return f"{PREFIX}{digest}-{clean}"


def is_ours(client_id: str | None) -> bool:
    return bool(client_id) and str(client_id).startswith(PREFIX)
