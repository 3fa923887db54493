"""Secrets hygiene (30-live.md §7): API keys come from the environment (or ``.env``) only, and never
appear in logs — every log record btkit's handlers emit has secret values masked."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

SECRET_NAME = re.compile(r"(API_?KEY|SECRET|PASSWORD|PASSPHRASE|TOKEN|PRIVATE_?KEY)", re.IGNORECASE)
MIN_SECRET_LEN = 6


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    return sorted(
        {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LEN},
        key=len,
        reverse=True,
    )


def mask(text: str, secrets: Iterable[str] | None = None) -> str:
    for value in secrets if secrets is not None else secret_values():
        if value in text:
            text = text.replace(value, value[:2] + "***")
    return text


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
