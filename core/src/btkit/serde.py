"""The one cattrs converter: strict structuring of everything read from disk, stable shapes written.

Strict means: unknown keys are an error; numbers must be JSON numbers (a string "1.5" is not a price);
floats must be finite; bools must be bools; every attrs validator runs (prices > 0 …). Documents carry
``schema_version``; a document with another version is refused, never guessed at.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import cattrs
from cattrs.errors import ClassValidationError

from btkit.errors import CorruptStateError

SCHEMA_VERSION = 1
T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=True)


def _float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, got {type(value).__name__} {value!r}")
    return value


def _str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def _bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true/false, got {type(value).__name__} {value!r}")
    return value


converter.register_structure_hook(float, _float)
converter.register_structure_hook(int, _int)
converter.register_structure_hook(str, _str)
converter.register_structure_hook(bool, _bool)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (ClassValidationError, cattrs.BaseValidationError)):
        leaves = []
        for sub in exc.exceptions:
            leaves.append(_describe(sub))
        return "; ".join(leaves) or str(exc)
    return f"{type(exc).__name__}: {exc}"


def structure(data: Any, cls: type[T], *, where: str) -> T:
    """Structure ``data`` as ``cls`` or raise :class:`CorruptStateError` naming ``where`` and why."""
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        raise CorruptStateError(f"{where}: invalid document ({_describe(exc)})") from None


def unstructure(obj: Any) -> Any:
    return converter.unstructure(obj)


def to_document(body: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, **body}


def from_document(doc: Any, *, where: str) -> dict[str, Any]:
    """Check the envelope (a JSON object with our schema_version) and return the body without it."""
    if not isinstance(doc, dict):
        raise CorruptStateError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    version = doc.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:  # true == 1 in Python: not a version
        raise CorruptStateError(
            f"{where}: schema_version {version!r} is not {SCHEMA_VERSION}; migrate it or restore a backup"
        )
    return {k: v for k, v in doc.items() if k != "schema_version"}
