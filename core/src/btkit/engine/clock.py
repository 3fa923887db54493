"""Clocks that drive the live runner: the wall clock, and the replay clock for rehearsals and tests.

A clock hands each participant (one live instance) the next tick time ``when`` (a minute boundary, ms)
and tells the market what "now" is, so the forming candle is never fetched. Participants of one
:class:`ReplayClock` advance in lockstep, minute by minute, as they would on the wall clock.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from datetime import datetime

from btkit.context import datetime_to_ms
from btkit.model import MINUTE_MS

log = logging.getLogger("btkit.live")

#: A system clock that goes back by more than this is treated as stepped back (see WallClock.now_ms).
STEP_BACK_TOLERANCE_MS = 1_000


class WallClock:
    """Real time: one tick per minute, ``delay_seconds`` after the boundary; sleeps, never spins.

    Time never goes backwards: when the system clock steps back (a manual change, a bad NTP server, a
    VM restored from a snapshot), a WARNING is logged and the clock carries on from where it was,
    advanced by the monotonic clock, until the system clock catches up. Open positions keep being
    monitored every minute instead of waiting, silently, for the lost time to pass again.
    """

    def __init__(self, delay_seconds: float = 2.0, poll_seconds: float = 5.0) -> None:
        self.delay_ms = int(delay_seconds * 1000)
        self.poll = poll_seconds
        self._anchor: tuple[int, int] | None = None  # (wall ms, monotonic ms) of the last trusted reading
        self._behind = False
        self._last = 0
        self._guard = threading.Lock()

    def now_ms(self) -> int:
        wall, mono = int(time.time() * 1000), int(time.monotonic() * 1000)
        with self._guard:
            if self._anchor is None:
                self._anchor, self._last = (wall, mono), wall
                return wall
            expected = self._anchor[0] + (mono - self._anchor[1])
            if wall >= expected - STEP_BACK_TOLERANCE_MS:  # normal, a small NTP slew, or a step forward
                if self._behind:
                    log.warning("the system clock caught up again; live ticks follow it from now on")
                self._anchor, self._behind, value = (wall, mono), False, wall
            else:
                if not self._behind:
                    log.warning(
                        "the system clock stepped back by %.1f s; live ticks carry on from the monotonic "
                        "clock (open positions stay monitored) until it catches up — check NTP / the host "
                        "clock",
                        (expected - wall) / 1000,
                    )
                    self._behind = True
                value = expected
            self._last = max(value, self._last)  # never backwards, not even by a slew
            return self._last

    def register(self) -> int:
        return 0

    def unregister(self, pid: int) -> None:
        return None

    async def next_tick(self, pid: int, last: int | None, stop: asyncio.Event | None = None) -> int | None:
        while True:
            now = self.now_ms()
            when = (now // MINUTE_MS) * MINUTE_MS
            if last is None or when > last:
                due = when + self.delay_ms
                if now >= due:
                    return when
                wait = (due - now) / 1000
            else:
                wait = (when + MINUTE_MS + self.delay_ms - now) / 1000
            wait = max(0.05, min(self.poll, wait))
            if stop is not None:
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                    return None
                except TimeoutError:
                    continue
            await asyncio.sleep(wait)


class ReplayClock:
    """Simulated time from ``start``: minute by minute, ``speed`` times faster than real time (None: as
    fast as the machine allows), until ``end`` (inclusive) when given. Thread-safe; lockstep across every
    run that shares this instance. A run that joins after the clock moved on (``Live.background`` calls
    are made one after the other) first catches up from ``start`` while the others wait for it."""

    def __init__(
        self, start: datetime | int, *, end: datetime | int | None = None, speed: float | None = None
    ) -> None:
        start_ms = start if isinstance(start, int) else datetime_to_ms(start)
        self.current = (start_ms // MINUTE_MS) * MINUTE_MS
        self.start = self.current
        self.end = None if end is None else (end if isinstance(end, int) else datetime_to_ms(end))
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0 or None, got {speed!r}")
        self.speed = speed
        self._ids = itertools.count(1)
        self._members: set[int] = set()
        self._done_with: dict[int, int] = {}  # pid -> last minute it finished
        self._cond = threading.Condition()
        self._last_advance = time.monotonic()

    def now_ms(self) -> int:
        return self.current

    def register(self) -> int:
        with self._cond:
            pid = next(self._ids)
            self._members.add(pid)
            return pid

    def unregister(self, pid: int) -> None:
        with self._cond:
            self._members.discard(pid)
            self._done_with.pop(pid, None)
            self._maybe_advance()
            self._cond.notify_all()

    def _maybe_advance(self) -> None:
        # A participant resuming from persisted state reports a ``last`` ahead of the clock: minutes
        # every participant is done with are skipped without pacing (nobody ticks them).
        while self._members and all(self._done_with.get(p, -1) >= self.current for p in self._members):
            ticked = any(self._done_with.get(p) == self.current for p in self._members)
            if ticked and self.speed is not None:
                pause = 60.0 / self.speed - (time.monotonic() - self._last_advance)
                if pause > 0:
                    self._cond.wait(pause)
            self.current += MINUTE_MS
            self._last_advance = time.monotonic()
            if self._finished():
                break

    def _finished(self) -> bool:
        return self.end is not None and self.current > self.end

    async def next_tick(self, pid: int, last: int | None, stop: asyncio.Event | None = None) -> int | None:
        """The next minute for participant ``pid`` (after ``last``), or None when the replay is over."""
        with self._cond:
            if last is not None:
                self._done_with[pid] = last
                self._maybe_advance()
                self._cond.notify_all()
        spins = 0
        while True:
            with self._cond:
                nxt = self.start if last is None else last + MINUTE_MS
                if self.end is not None and nxt > self.end:
                    return None
                if nxt <= self.current:  # the clock's minute, or one a late joiner has to catch up on
                    return nxt
            if stop is not None and stop.is_set():
                return None
            # let the other participants finish their minute (same loop: yield; other threads: nap)
            spins += 1
            await asyncio.sleep(0 if spins < 50 else 0.001)
