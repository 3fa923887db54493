"""Credentials from the environment and secret masking (no ccxt import here)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

import attrs

from btkit.errors import ConfigError


@attrs.frozen(repr=False)
class Credentials:
    """API credentials read from the environment; ``repr`` never shows them."""

    api_key: str
    secret: str
    password: str | None = None

    def __repr__(self) -> str:
        return "Credentials(api_key=***, secret=***)"

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.api_key, self.secret, self.password) if s)


def credentials_from_env(
    key_var: str,
    secret_var: str,
    password_var: str | None = None,
    *,
    required: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Credentials | None:
    """Read credentials from environment variables; raise :class:`ConfigError` naming the variables when
    ``required`` and one is missing or empty."""
    env = os.environ if environ is None else environ
    key = env.get(key_var, "").strip()
    secret = env.get(secret_var, "").strip()
    password = env.get(password_var, "").strip() if password_var else None
    if key and secret:
        return Credentials(key, secret, password or None)
    if required:
        raise ConfigError(
            f"API credentials missing: set {key_var} and {secret_var} in the environment (or .env); "
            "keys are never read from btkit.toml or options"
        )
    return None


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in ``text`` with ``***`` and drop request signatures."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return re.sub(r"(signature=)[0-9a-fA-F]+", r"\1***", text)


class SecretMasker(logging.Filter):
    """A logging filter that masks the given secrets in records of the logger it is attached to."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these too (a process may hold several sets of keys)."""
        self._secrets = tuple(dict.fromkeys((*self._secrets, *(s for s in secrets if s))))

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            masked = mask_secrets(message, self._secrets)
            if masked != message:
                record.msg = masked
                record.args = None
        return True
