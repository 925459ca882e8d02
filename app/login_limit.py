"""Login rate limit: at most N failed sign-ins per (user name, client address) and per client
address per window.

The user name is counted together with the address, so nobody elsewhere can lock a known user
out by failing on purpose. Each attempt reserves its slot before the password is checked
(``attempt``), so parallel guesses cannot slip past the limit while argon2 runs; a successful
sign-in gives the slot back (``succeeded``).

Kept in memory, per process: with several brokers behind a load balancer each counts on its own,
so an attacker gets N failures per window per process (still a small, fixed number). A restart
forgets the counts. Successful sign-in clears the user name's count (not the address's).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable


class LoginLimiter:
    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = float(window_seconds)
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _prune(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds until another attempt is allowed when any key is blocked, else ``None``."""
        with self._lock:
            return self._wait(keys, self._clock())

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                self._prune(key, now)
                self._failures.setdefault(key, deque()).append(now)

    def attempt(self, keys: Iterable[str]) -> int | None:
        """Reserve an attempt on every key at once; when any key is used up, reserve nothing
        and return the seconds to wait."""
        keys = tuple(keys)
        with self._lock:
            wait = self._wait(keys, self._clock())
            if wait is None:
                now = self._clock()
                for key in keys:
                    self._failures.setdefault(key, deque()).append(now)
        return wait

    def succeeded(self, keys: Iterable[str]) -> None:
        """The attempt was right: its reservations are given back."""
        with self._lock:
            for key in keys:
                times = self._failures.get(key)
                if times:
                    times.pop()
                if not times:
                    self._failures.pop(key, None)

    def _wait(self, keys: Iterable[str], now: float) -> int | None:
        wait = 0.0
        for key in keys:
            times = self._prune(key, now)
            if len(times) >= self.max_failures:
                wait = max(wait, self.window - (now - times[-self.max_failures]))
        return max(1, math.ceil(wait)) if wait > 0 else None

    def clear(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def login_keys(username: str, address: str) -> tuple[str, str]:
    """The counters a sign-in attempt touches: its user name at its address, and its address."""
    return (f"user:{username.strip().lower()}@{address}", f"addr:{address}")
