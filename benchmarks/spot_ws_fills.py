"""Spot fills over websockets vs REST polling: time from the fill to the broker's confirmed answer, and the
REST requests per entry, both sides in the same run against the fake spot exchange (``FakeSpotWsExchange``:
Binance spot REST + the WS API user data stream on 127.0.0.1; real ccxt / ccxt.pro).

Each entry is a limit buy below the market on a symbol of its own (``SYM<i>USDT``) that the price reaches
a seeded random 0.1 to ``--max-fill-after`` (2) seconds after it rests on the exchange (the same delays on
both sides); the broker (``ccxt:binance``, default timings: poll interval 0.5 s, websocket reconciliation
after 2 s of silence; protection emulated so only the entry is counted) waits for it. Reported per side: median and 90th
percentile of fill → answer, REST requests and order reads per entry (``waiting``: the reads while the
order rested; the others are the look-ups by client id before placing), CPU milliseconds per entry (the
fake runs in this process too), and websocket / polling ratios from the same run.

Usage: ``uv run python benchmarks/spot_ws_fills.py [--entries 20] [--max-fill-after 2.0] [--seed 7]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from typing import Any

from btkit.broker_payloads import ExchangeFill
from btkit.testing.broker_contract import Payloads
from btkit_ccxt.spot import CcxtSpotBroker
from btkit_ccxt.testing_ws import FakeSpotWsExchange

ORDER = "/api/v3/order"


async def one_side(
    fake: FakeSpotWsExchange, websocket: bool, entries: int, fill_after: float
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "api_base_url": fake.url,
        "ws_base_url": fake.ws_url,
        "websocket": websocket,
        "protection": "emulated",
        "entry_timeout_seconds": 10.0,
    }
    broker = CcxtSpotBroker("binance", **options)
    latencies: list[float] = []
    requests: list[int] = []
    reads: list[int] = []
    waits: list[int] = []  # order reads while the order rested (the rest are the look-ups before placing)
    cpu: list[float] = []
    try:
        await broker.wait_for_init()
        for i in range(entries):
            symbol = f"SYM{i}USDT"
            price = float(fake.price(symbol))
            payloads = Payloads(symbol, round(price * 0.99, 3))
            opened = payloads.open(f"bench{i}")
            delay = fill_after[i % len(fill_after)]

            def fill(
                symbol: str = symbol,
                payloads: Payloads = payloads,
                cid: str = opened.client_order_id,
                delay: float = delay,
            ) -> tuple[float, int]:
                fake.wait_until(lambda f: f.order(cid) is not None)  # resting on the exchange
                resting_reads = len(fake.requests_to(ORDER, "GET"))
                time.sleep(delay)
                fake.set_price(str(payloads.price), symbol)
                return time.perf_counter(), resting_reads

            before, before_reads = len(fake.requests), len(fake.requests_to(ORDER, "GET"))
            cpu0 = time.process_time()
            mover = asyncio.ensure_future(asyncio.to_thread(fill))
            answer = await broker.on_signal_open_commit(opened)
            done = time.perf_counter()
            filled_at, resting_reads = await mover
            cpu.append(time.process_time() - cpu0)
            if not isinstance(answer, ExchangeFill) or abs(answer.price - payloads.price) > 1e-9:
                raise SystemExit(f"{symbol}: wrong entry answer {answer!r}")
            latencies.append(done - filled_at)
            requests.append(len(fake.requests) - before)
            reads.append(len(fake.requests_to(ORDER, "GET")) - before_reads)
            waits.append(len(fake.requests_to(ORDER, "GET")) - resting_reads)
    finally:
        await broker.close()
    lat = sorted(latencies)
    return {
        "side": "websocket" if websocket else "polling",
        "median_ms": statistics.median(lat) * 1000,
        "p90_ms": lat[min(len(lat) - 1, int(0.9 * len(lat)))] * 1000,
        "rest_per_entry": sum(requests) / entries,
        "order_reads_per_entry": sum(reads) / entries,
        "wait_reads_per_entry": sum(waits) / entries,
        "cpu_ms_per_entry": sum(cpu) / entries * 1000,
        "sockets": fake.ws_connections["user"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument(
        "--max-fill-after", type=float, default=2.0, help="fills come 0.1 s to this after resting"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    delays = [rng.uniform(0.1, args.max_fill_after) for _ in range(args.entries)]  # the same on both sides
    results = []
    for websocket in (True, False):
        with FakeSpotWsExchange(extra_symbols=args.entries) as fake:
            os.environ["BINANCE_API_KEY"], os.environ["BINANCE_API_SECRET"] = fake.api_key, fake.api_secret
            results.append(asyncio.run(one_side(fake, websocket, args.entries, delays)))
    ws, poll = results
    print(
        f"load average {os.getloadavg()[0]:.2f}; {args.entries} entries per side, fills "
        f"0.1-{args.max_fill_after:g} s after resting (seed {args.seed})"
    )
    print(
        f"{'side':>10} {'median ms':>10} {'p90 ms':>8} {'REST/entry':>11} {'reads/entry':>12} {'waiting':>8} "
        f"{'CPU ms':>7}"
    )
    for r in results:
        print(
            f"{r['side']:>10} {r['median_ms']:>10.1f} {r['p90_ms']:>8.1f} {r['rest_per_entry']:>11.2f} "
            f"{r['order_reads_per_entry']:>12.2f} {r['wait_reads_per_entry']:>8.2f} {r['cpu_ms_per_entry']:>7.1f}"
        )
    ratios = {
        "latency_ratio": ws["median_ms"] / poll["median_ms"],
        "rest_ratio": ws["rest_per_entry"] / poll["rest_per_entry"],
        "wait_reads_ratio": ws["wait_reads_per_entry"] / poll["wait_reads_per_entry"],
        "cpu_ratio": ws["cpu_ms_per_entry"] / poll["cpu_ms_per_entry"],
    }
    print(
        f"websocket / polling: fill→answer {ratios['latency_ratio']:.2f}x, REST requests {ratios['rest_ratio']:.2f}x, "
        f"order reads while resting {ratios['wait_reads_ratio']:.2f}x, "
        f"CPU {ratios['cpu_ratio']:.2f}x"
    )
    print(json.dumps({"results": results, **ratios}))


if __name__ == "__main__":
    main()
