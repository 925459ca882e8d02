"""Login rate limit: at most N failed sign-ins per user name and per client address per window.

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
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._prune(key, now)
                if len(times) >= self.max_failures:
                    wait = max(wait, self.window - (now - times[-self.max_failures]))
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                self._prune(key, now)
                self._failures.setdefault(key, deque()).append(now)

    def clear(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def login_keys(username: str, address: str) -> tuple[str, str]:
    """The counters a sign-in attempt touches: its user name and its client address."""
    return (f"user:{username.strip().lower()}", f"addr:{address}")
