"""Secrets hygiene (30-live.md §7): API keys come from the environment (or ``.env``) only, and never
appear in logs — every log record btkit's handlers emit has secret values masked."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SECRET_NAME = re.compile(r"(API_?KEY|SECRET|PASSWORD|PASSPHRASE|TOKEN|PRIVATE_?KEY)", re.IGNORECASE)
MIN_SECRET_LEN = 6


#: ``scheme://user:password@`` in any text: the password part is masked wherever a URL appears.
URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)([^\s@/'\"]+)@")
_REGISTERED: set[str] = set()


def register_secret(value: object) -> None:
    """Mask ``value`` in every message from now on (a secret that came from a config file or option)."""
    if isinstance(value, str) and len(value) >= MIN_SECRET_LEN:
        _REGISTERED.add(value)
    elif isinstance(value, str):
        for m in URL_PASSWORD.finditer(value):
            _REGISTERED.add(m.group(2))


def register_option_secrets(options: Mapping[str, object]) -> None:
    """Register the values of secret-named options (``api_secret``, ``password``…) and the passwords
    of URL-valued options, so that no message can print them."""
    for key, value in options.items():
        if isinstance(value, str):
            if SECRET_NAME.search(str(key)):
                register_secret(value)
            for m in URL_PASSWORD.finditer(value):
                if len(m.group(2)) >= 3:
                    _REGISTERED.add(m.group(2))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    found = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LEN}
    for v in env.values():  # passwords inside URLs (BTKIT__PERSISTENCE__URL=redis://:pw@host/0)
        if "://" in v:
            found.update(m.group(2) for m in URL_PASSWORD.finditer(v) if len(m.group(2)) >= 3)
    found |= _REGISTERED
    return sorted(found, key=len, reverse=True)


def mask(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every known secret value and every URL password masked."""
    if "://" in text:
        text = URL_PASSWORD.sub(r"\1***@", text)
    for value in secrets if secrets is not None else secret_values():
        if value in text:
            text = text.replace(value, value[:2] + "***")
    return text


def mask_options(options: Mapping[str, object]) -> dict[str, object]:
    """Options as they may be shown: secret-named values as ``***``, every string masked."""
    return {
        k: "***" if SECRET_NAME.search(str(k)) and v else mask(v) if isinstance(v, str) else v
        for k, v in options.items()
    }


class MaskingStream:
    """A text stream (stdout/stderr) whose every write passes through :func:`mask`."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install_output_masking() -> None:
    """Mask secrets in everything the process prints to stdout and stderr (idempotent)."""
    if not isinstance(sys.stdout, MaskingStream):
        sys.stdout = MaskingStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, MaskingStream):
        sys.stderr = MaskingStream(sys.stderr)  # type: ignore[assignment]


class MaskingFilter(logging.Filter):
    """Replaces secret values in the formatted message (and args) of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = secret_values()
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        masked = mask(message, secrets)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:  # format the traceback now, so it can be masked
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text, secrets)
        return True


def install_log_masking(logger: logging.Logger | None = None) -> None:
    """Attach the masking filter to every handler of the root logger (idempotent)."""
    root = logger or logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())


def load_dotenv(path: str | os.PathLike[str] = ".env") -> dict[str, str]:
    """Read ``KEY=VALUE`` lines from ``.env`` into os.environ (existing variables win). Returns what it set."""
    file = Path(path)
    if not file.is_file():
        return {}
    loaded: dict[str, str] = {}
    for line in file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip().removeprefix("export ").strip(), value.strip().strip("'\"")
        if key and key not in os.environ:
            os.environ[key] = value
            loaded[key] = value
    return loaded
