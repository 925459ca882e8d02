"""``json_too_deep``: the nesting a parser would reach, found without parsing."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from app.api.limits import MAX_JSON_DEPTH, json_too_deep


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize(
    ("body", "too_deep"),
    [
        (b"[]", False),
        (b"[" * 64 + b"]" * 64, False),
        (b"[" * 65 + b"]" * 65, True),
        (b'{"a":' * 65 + b"1" + b"}" * 65, True),
        (b"[" * 100_000, True),  # never closed: a parser recurses before it sees the error
        (b"[" * 65 + b"}", True),
        (b"[" * 63 + b"}", False),  # invalid, but the parser fails within the limit
        (b'"' + b"[" * 100_000, False),  # all inside one unclosed string
        (b'["' + b"[" * 100 + b'"]', False),  # brackets in a string are text
        (b'["\\\\"' + b"[" * 70 + b"]", True),  # an escaped backslash ends no string
        (b'["\\""' + b"[" * 70 + b"]", True),  # an escaped quote then the closing one
        (b'["\\\\\\"' + b"[" * 70 + b"]", False),  # escaped backslash, escaped quote: still open
    ],
)
def test_known_bodies(body: bytes, too_deep: bool) -> None:
    assert json_too_deep(body) is too_deep


def test_agrees_with_the_real_depth_of_random_documents() -> None:
    rnd = random.Random(20261130)
    keys = ["[", "}", "\\", '"', 'a"[\\', "k"]
    leaves: list[Any] = ['a"[\\', "]}{", 1, None, "\\\\", '\\"', "\\u005b"]

    def document(depth: int) -> Any:
        if depth == 0 or rnd.random() < 0.1:
            return rnd.choice(leaves)
        width = 1 if rnd.random() < 0.9 else 2
        if rnd.random() < 0.5:
            return [document(depth - 1) for _ in range(width)]
        return {rnd.choice(keys) + str(i): document(depth - 1) for i in range(width)}

    for _ in range(500):
        value = document(rnd.randint(0, 80))
        body = json.dumps(value).encode()
        for limit in (1, 5, MAX_JSON_DEPTH):
            assert json_too_deep(body, limit) == (_depth(value) > limit), body


@pytest.mark.parametrize(
    "body",
    [
        b'"' + b'\\"' * 500_000,
        b"[]" * 500_000,
        b"[" * 1_000_000,
        (b"[" * 64 + b"]" * 64) * 8000,
        b'"a",' * 250_000,
    ],
    ids=["escapes", "pairs", "unclosed", "deep-64-repeated", "strings"],
)
def test_a_mebibyte_takes_milliseconds(body: bytes) -> None:
    started = time.perf_counter()
    json_too_deep(body)
    assert time.perf_counter() - started < 1.0  # ~40 ms here; generous for a loaded CI
