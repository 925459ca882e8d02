"""SQL conditions that narrow candidates for the pure matchers of ``app.domain.matching``.

Each condition returns a superset of the exact matches (SQLite's LIKE ignores ASCII case,
PostgreSQL's does not), and the caller confirms every candidate with the domain matcher. What
the SQL must do is use the indexes; what it may not do is drop a true match.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam

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


# ---------------------------------------------------------------------------------------------
# Cached statements: one statement per query *shape*, values as bound parameters.


class Binder:
    """Builds the conditions of a query twice over, from the same code: once cheaply, recording
    only the query's shape (which conditions, wildcard or not, how many name groups) and its
    values as parameters; and once per new shape, building SQL with ``bindparam`` placeholders.

    A statement built for a shape is kept (``app.services.read``) and executed with the
    parameters of every later query of that shape, so neither building the statement nor
    SQLAlchemy's cache-key walk over it is paid per C-FIND.
    """

    def __init__(self, *, build: bool) -> None:
        self.build = build
        self.shape: list[tuple[Any, ...]] = []
        self.params: dict[str, Any] = {}

    def _name(self) -> str:
        return f"p{len(self.params)}"

    def _bind(self, value: Any, *, expanding: bool = False) -> Any:
        name = self._name()
        self.params[name] = value
        return bindparam(name, expanding=expanding) if self.build else None

    def text(self, column: Any, key: TextKey | None) -> ColumnElement[bool] | None:
        if key is None:
            self.shape.append(())  # every call takes its place: the shape says which keys
            return None
        self.shape.append(("text", key.is_wildcard))
        if key.is_wildcard:
            param = self._bind(like_pattern(key.value))
            return column.like(param, escape=LIKE_ESCAPE) if self.build else None
        param = self._bind(key.value)
        return (column == param) if self.build else None

    def name(self, key_column: Any, key: NameKey | None) -> ColumnElement[bool] | None:
        if key is None:
            self.shape.append(())
            return None
        groups = key.sql_pattern_groups
        self.shape.append(("name", len(groups)))
        params = [self._bind(like_pattern(g, contains=True)) for g in groups]
        if not self.build:
            return None
        return and_(*[key_column.like(p, escape=LIKE_ESCAPE) for p in params])

    def range(self, column: Any, rng: Range | None) -> ColumnElement[bool] | None:
        if rng is None:
            self.shape.append(())
            return None
        self.shape.append(("range", rng.lo is not None, rng.hi is not None))
        lo = self._bind(rng.lo) if rng.lo is not None else None
        hi = self._bind(rng.hi) if rng.hi is not None else None
        if not self.build:
            return None
        parts = [column != ""]
        if rng.lo is not None:
            parts.append(column >= lo)
        if rng.hi is not None:
            parts.append(column <= hi)
        return and_(*parts)

    def one_of(self, column: Any, values: tuple[str, ...] | None) -> ColumnElement[bool] | None:
        if values is None:
            self.shape.append(())
            return None
        self.shape.append(("in",))
        param = self._bind(list(values), expanding=True)
        return column.in_(param) if self.build else None

    def flag(self, on: bool, condition: Any) -> ColumnElement[bool] | None:
        """A condition without values, present or not (``condition`` is called to build it)."""
        self.shape.append(("flag", on))
        return condition() if self.build and on else None
