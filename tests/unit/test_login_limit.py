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
    assert keys == ("user:alice@10.0.0.1", "addr:10.0.0.1")
    for _ in range(3):
        assert limiter.retry_after(keys) is None
        limiter.failed(keys)
        clock.now += 10
    assert limiter.retry_after(keys) == 270  # now 1030; the first failure leaves the window at 1300
    assert limiter.retry_after(login_keys("bob", "10.0.0.1")) == 270  # same address
    # The same user name from elsewhere is not locked out by someone failing on purpose.
    assert limiter.retry_after(login_keys("alice", "10.0.0.2")) is None
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


def test_attempts_reserve_their_slot_before_the_password_is_checked() -> None:
    """Parallel guesses: each takes its slot at once, so the limit holds while argon2 runs."""
    limiter = LoginLimiter(3, 300, clock=Clock())
    keys = login_keys("alice", "10.0.0.1")
    assert [limiter.attempt(keys) for _ in range(4)] == [None, None, None, 300]
    limiter.succeeded(keys)  # one of the three was right: its slot comes back
    assert limiter.attempt(keys) is None
    assert limiter.attempt(keys) == 300


def test_a_refused_attempt_reserves_nothing() -> None:
    limiter = LoginLimiter(1, 60, clock=Clock())
    assert limiter.attempt(login_keys("bob", "10.0.0.9")) is None
    assert limiter.attempt(login_keys("carol", "10.0.0.9")) == 60  # the address is used up
    assert limiter.attempt(login_keys("carol", "10.0.0.8")) is None  # carol's count is untouched
