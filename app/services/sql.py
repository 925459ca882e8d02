"""SQL conditions that narrow candidates for the pure matchers of ``app.domain.matching``.

Each condition returns a superset of the exact matches (SQLite's LIKE ignores ASCII case,
PostgreSQL's does not), and the caller confirms every candidate with the domain matcher. What
the SQL must do is use the indexes; what it may not do is drop a true match.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_

from app.domain.matching import NameKey, Range, TextKey

LIKE_ESCAPE = "\\"


def like_pattern(wildcard: str, *, contains: bool = False) -> str:
    """DICOM wildcard (``*``, ``?``) to a LIKE pattern with ``%``/``_``/``\\`` escaped."""
    out = []
    for char in wildcard:
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char in "%_\\":
            out.append(LIKE_ESCAPE + char)
        else:
            out.append(char)
    pattern = "".join(out)
    return f"%{pattern}%" if contains else pattern


def text_key_condition(column: Any, key: TextKey | None) -> ColumnElement[bool] | None:
    if key is None:
        return None
    if key.is_wildcard:
        return column.like(like_pattern(key.value), escape=LIKE_ESCAPE)
    return column == key.value


def text_condition(column: Any, raw: str) -> ColumnElement[bool] | None:
    return text_key_condition(column, TextKey.parse(raw))


def name_key_condition(key_column: Any, key: NameKey | None) -> ColumnElement[bool] | None:
    """On the folded name key column: each key group must occur somewhere in the name."""
    if key is None:
        return None
    parts = [
        key_column.like(like_pattern(group, contains=True), escape=LIKE_ESCAPE)
        for group in key.sql_pattern_groups
    ]
    return and_(*parts)


def range_condition(column: Any, rng: Range | None) -> ColumnElement[bool] | None:
    if rng is None:
        return None
    parts = [column != ""]
    if rng.lo is not None:
        parts.append(column >= rng.lo)
    if rng.hi is not None:
        parts.append(column <= rng.hi)
    return and_(*parts)
