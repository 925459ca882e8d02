"""The login rate limit: failures per key within a sliding window."""

from __future__ import annotations

from app.login_limit import LoginLimiter, login_keys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_blocks_after_max_failures_until_the_window_passes() -> None:
    clock = Clock()
    limiter = LoginLimiter(3, 300, clock=clock)
    keys = login_keys("Alice", "10.0.0.1")
    assert keys == ("user:alice", "addr:10.0.0.1")
    for _ in range(3):
        assert limiter.retry_after(keys) is None
        limiter.failed(keys)
        clock.now += 10
    assert limiter.retry_after(keys) == 270  # now 1030; the first failure leaves the window at 1300
    assert limiter.retry_after(login_keys("bob", "10.0.0.1")) == 270  # same address
    assert limiter.retry_after(login_keys("alice", "10.0.0.2")) == 270  # same user name
    assert limiter.retry_after(login_keys("bob", "10.0.0.2")) is None
    clock.now = 1300.0
    assert limiter.retry_after(keys) is None


def test_success_clears_the_user_name() -> None:
    limiter = LoginLimiter(2, 60, clock=Clock())
    keys = login_keys("alice", "10.0.0.1")
    limiter.failed(keys)
    limiter.clear(keys[:1])
    limiter.failed(login_keys("alice", "10.0.0.2"))
    assert limiter.retry_after(login_keys("alice", "10.0.0.3")) is None
