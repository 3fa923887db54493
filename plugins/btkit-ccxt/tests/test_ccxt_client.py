"""make_client rules, the plugin hook, settings and secret masking."""

from __future__ import annotations

import asyncio
import importlib.metadata
import itertools
import logging
from datetime import UTC, datetime

import pytest

import btkit_ccxt
from btkit.components import ExchangeSpec
from btkit.errors import ConfigError
from btkit_ccxt import Credentials, SecretMasker, credentials_from_env, make_client, mask_secrets

testing = pytest.importorskip(
    "btkit_binance_futures.testing", reason="the fake exchange ships with btkit-binance-futures"
)
FakeBinanceFutures = testing.FakeBinanceFutures
fake_binance = testing.fake_binance


def test_make_client_replaces_the_api_urls_as_a_whole() -> None:
    client = make_client("binanceusdm", api_base_url="http://127.0.0.1:9/")
    try:
        api = client.urls["api"]
        assert set(api) == {
            "fapiPublic",
            "fapiPublicV2",
            "fapiPublicV3",
            "fapiPrivate",
            "fapiPrivateV2",
            "fapiPrivateV3",
            "fapiData",
        }
        assert api["fapiPublic"] == "http://127.0.0.1:9/fapi/v1"
        assert api["fapiPrivateV3"] == "http://127.0.0.1:9/fapi/v3"
        assert client.enableRateLimit is True
    finally:
        asyncio.run(client.close())


def test_other_exchanges_keep_every_api_key_rebased() -> None:
    client = make_client("bybit", api_base_url="https://proxy.example:8443")
    try:
        flat = str(client.urls["api"])
        assert "bybit.com" not in flat and "https://proxy.example:8443" in flat
    finally:
        asyncio.run(client.close())


def test_rate_limiting_cannot_be_switched_off() -> None:
    client = make_client("binanceusdm", config={"enableRateLimit": False})
    try:
        assert client.enableRateLimit is True
    finally:
        asyncio.run(client.close())


@pytest.mark.parametrize("where", ["options", "config"])
def test_keys_in_options_are_refused(where: str) -> None:
    with pytest.raises(ConfigError, match="API keys come only from the environment"):
        make_client("binanceusdm", **{where: {"apiKey": "k", "secret": "s"}})  # type: ignore[arg-type]


def test_urls_through_the_constructor_and_unknown_ids_are_refused() -> None:
    with pytest.raises(ConfigError, match="pass api_base_url"):
        make_client("binanceusdm", config={"urls": {"api": {}}})
    with pytest.raises(ConfigError, match="unknown ccxt exchange id 'nope'"):
        make_client("nope")
    with pytest.raises(ConfigError, match="must look like"):
        make_client("binanceusdm", api_base_url="127.0.0.1:80")


def test_credentials_come_from_the_environment_and_never_show() -> None:
    env = {"X_KEY": "abcdefgh", "X_SECRET": "s3cr3t-value"}
    creds = credentials_from_env("X_KEY", "X_SECRET", environ=env)
    assert creds is not None and creds.api_key == "abcdefgh"
    assert "abcdefgh" not in repr(creds) and "s3cr3t" not in repr(creds)
    with pytest.raises(ConfigError, match="set X_KEY and X_SECRET"):
        credentials_from_env("X_KEY", "X_SECRET", environ={})
    assert credentials_from_env("X_KEY", "X_SECRET", environ={}, required=False) is None


def test_mask_secrets_and_the_logging_filter(caplog: pytest.LogCaptureFixture) -> None:
    text = "key abcdefgh in GET /x?a=1&signature=0123abcd and s3cr3t-value"
    masked = mask_secrets(text, ["abcdefgh", "s3cr3t-value"])
    assert masked == "key *** in GET /x?a=1&signature=*** and ***"
    logger = logging.getLogger("btkit.test.masker")
    logger.addFilter(SecretMasker(["abcdefgh"]))
    with caplog.at_level(logging.DEBUG, logger="btkit.test.masker"):
        logger.warning("sent %s", "abcdefgh")
    assert "abcdefgh" not in caplog.text and "sent ***" in caplog.text


def test_ccxt_logger_is_kept_at_info() -> None:
    logging.getLogger("ccxt").setLevel(logging.DEBUG)
    client = make_client("binanceusdm")
    asyncio.run(client.close())
    assert logging.getLogger("ccxt").level == logging.INFO


def test_binance_error_tables_still_apply_on_a_rebased_url(fake_binance: FakeBinanceFutures) -> None:
    from ccxt.base.errors import ExchangeError, InsufficientFunds

    creds = Credentials(fake_binance.api_key, fake_binance.api_secret)

    async def place(client) -> BaseException:  # type: ignore[no-untyped-def]
        try:
            fake_binance.inject("/fapi/v1/order", "error", code=-2019, msg="Margin is insufficient.")
            await client.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
        except Exception as exc:
            return exc
        finally:
            await client.close()
        raise AssertionError("the order should have failed")

    merged = asyncio.run(place(make_client("binanceusdm", api_base_url=fake_binance.url, credentials=creds)))
    assert type(merged) is InsufficientFunds
    # without the fold, ccxt picks Binance's per-market tables by host name: -2019 degrades
    raw = make_client("binanceusdm", api_base_url=fake_binance.url, credentials=creds)
    raw.exceptions = make_client("binanceusdm").exceptions
    assert type(asyncio.run(place(raw))) is ExchangeError


def test_non_json_success_raises_instead_of_reading_as_empty(fake_binance: FakeBinanceFutures) -> None:
    from ccxt.base.errors import BadResponse

    async def fetch(client):  # type: ignore[no-untyped-def]
        try:
            fake_binance.inject("/fapi/v1/klines", "non_json")
            return await client.fetch_ohlcv("BTC/USDT:USDT", "1m", 1_704_067_200_000, 3)
        finally:
            await client.close()

    assert (
        asyncio.run(fetch(make_client("binanceusdm", api_base_url=fake_binance.url, strict_json=False))) == []
    )
    with pytest.raises(BadResponse, match="not JSON"):
        asyncio.run(fetch(make_client("binanceusdm", api_base_url=fake_binance.url)))


def test_entry_point_and_hook_offer_every_ccxt_id() -> None:
    points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="btkit")}
    assert points.get("ccxt") == "btkit_ccxt"
    specs = btkit_ccxt.btkit_exchanges()
    names = {s.name for s in specs}
    assert {"ccxt:binance", "ccxt:binanceusdm", "ccxt:bybit", "ccxt:okx"} <= names
    assert all(isinstance(s, ExchangeSpec) and s.dist == "btkit-ccxt" for s in specs)


def test_hook_exchange_reads_its_btkit_toml_table(
    fake_binance: FakeBinanceFutures,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    (tmp_path / "btkit.toml").write_text(
        f'[exchange."ccxt:binanceusdm"]\napi_base_url = "{fake_binance.url}"\ntimeout_ms = 3000\n'
    )
    monkeypatch.chdir(tmp_path)
    spec = next(s for s in btkit_ccxt.btkit_exchanges() if s.name == "ccxt:binanceusdm")

    async def go():  # type: ignore[no-untyped-def]
        try:
            return await spec.get_candles("BTC/USDT:USDT", "1h", datetime(2024, 1, 2, tzinfo=UTC), 24)
        finally:
            assert spec.close is not None
            await spec.close()

    rows = asyncio.run(go())
    assert len(rows) == 24 and rows[0][0] == 1_704_153_600_000
    assert all(b[0] - a[0] == 3_600_000 for a, b in itertools.pairwise(rows))


def test_importing_the_plugin_does_not_import_ccxt() -> None:
    import subprocess
    import sys

    code = "import sys, btkit_ccxt; btkit_ccxt.btkit_exchanges(); print('ccxt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
