"""Reversible, safe encoding of key parts (symbols, strategy names) for every persistence backend.

``BTC/USDT:USDT`` must not create sub-directories and ``..`` must not escape the state directory:
every byte outside ``[A-Za-z0-9_-]`` (and a ``.`` anywhere) becomes ``%XX``, so an encoded part is
never empty, never ``.``/``..``, never contains a path separator, and decodes back exactly.
"""

from __future__ import annotations

from btkit.errors import PersistenceError

MAX_PART_CHARS = 120
MAX_ENCODED_CHARS = 200  # file names stay well below every filesystem's 255-byte limit
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def encode_part(part: str) -> str:
    """Encode one key part; raises :class:`PersistenceError` for empty, NUL-containing or too long."""
    if not isinstance(part, str) or not part:
        raise PersistenceError(f"state key part must be a non-empty string, got {part!r}")
    if "\x00" in part:
        raise PersistenceError(f"state key part {part!r} contains NUL; rename the symbol or strategy")
    if len(part) > MAX_PART_CHARS:
        raise PersistenceError(
            f"state key part is {len(part)} characters (max {MAX_PART_CHARS}); use a shorter name"
        )
    encoded = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in part.encode("utf-8"))
    if len(encoded) > MAX_ENCODED_CHARS:
        raise PersistenceError(
            f"state key part {part[:20]!r}… encodes to {len(encoded)} characters (max {MAX_ENCODED_CHARS}); "
            "use a shorter name"
        )
    return encoded


def decode_part(encoded: str) -> str:
    """Inverse of :func:`encode_part`."""
    out = bytearray()
    i = 0
    while i < len(encoded):
        ch = encoded[i]
        if ch == "%":
            out.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(ch))
            i += 1
    return out.decode("utf-8")


def encode_key(key: tuple[str, ...]) -> tuple[str, ...]:
    if not key:
        raise PersistenceError("state key must have at least one part")
    return tuple(encode_part(p) for p in key)


def decode_key(parts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(decode_part(p) for p in parts)
