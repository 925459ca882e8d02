"""Attribute matching of PS3.4 C.2.2.2, as the Modality Worklist model uses it (PS3.4 K.2.2).

Each key type here is parsed once per query and then tested against many stored values, so the
wildcard regexes are compiled at parse time. A key of ``None`` means universal matching.

Rules that apply to every key (PS3.4 K.2.2.1.1.1): an entity whose stored value is empty fails to
match any non-empty key; ``*`` alone is universal matching (C.2.2.2.4).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from app.domain.errors import InvalidQueryError

WILDCARDS = frozenset("*?")
VALUE_SEPARATOR = "\\"
PN_GROUP_SEPARATOR = "="
PN_COMPONENT_SEPARATOR = "^"

Matcher = Callable[[str], bool]


def has_wildcard(value: str) -> bool:
    return any(c in WILDCARDS for c in value)


def wildcard_regex(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """Translate a DICOM wildcard (``*`` any run, ``?`` one character) to an anchored regex."""
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


def _matcher(pattern: str) -> Matcher:
    if has_wildcard(pattern):
        return wildcard_regex(pattern).fullmatch  # type: ignore[return-value]
    return pattern.__eq__


@dataclass(frozen=True)
class TextKey:
    """Single Value or Wild Card matching on a text VR (AE, CS, LO, SH...), case-sensitive.

    Leading and trailing spaces are not significant for these VRs (PS3.5 6.2), so both the key
    and stored values are compared stripped.
    """

    value: str
    _match: Matcher = field(repr=False, compare=False)

    @classmethod
    def parse(cls, raw: str) -> TextKey | None:
        value = raw.strip()
        if value in ("", "*"):
            return None
        return cls(value, _matcher(value))

    @property
    def is_wildcard(self) -> bool:
        return has_wildcard(self.value)

    def matches(self, stored: str) -> bool:
        stored = stored.strip()
        return bool(stored) and self._match(stored)

    def matches_any(self, stored_values: tuple[str, ...]) -> bool:
        """VM>1: the entity matches when any stored value matches (PS3.4 K.2.2.3)."""
        return any(self.matches(v) for v in stored_values)


def normalize_person_name(value: str) -> str:
    """Canonical PN: no padding spaces, no trailing empty components or component groups.

    ``SMITH^JOHN^^^`` and ``SMITH^JOHN`` are the same name (PS3.5 6.2.1).
    """
    groups = []
    for group in value.strip().split(PN_GROUP_SEPARATOR):
        components = [c.strip() for c in group.split(PN_COMPONENT_SEPARATOR)]
        groups.append(PN_COMPONENT_SEPARATOR.join(components).rstrip(PN_COMPONENT_SEPARATOR))
    return PN_GROUP_SEPARATOR.join(groups).rstrip(PN_GROUP_SEPARATOR)


def person_name_key(value: str) -> str:
    """The case-folded form stored beside a PN for case-insensitive matching in SQL."""
    return normalize_person_name(value).lower()


@dataclass(frozen=True)
class NameKey:
    """Single Value or Wild Card matching on PN (PS3.4 C.2.2.2.1.1, C.2.2.2.4).

    A key without ``=`` is compared with each component group of the stored name (alphabetic,
    ideographic, phonetic) and matches if any does; a key with ``=`` compares group by group,
    an empty key group matching anything. Case sensitivity is a setting, stated in the
    conformance statement.
    """

    value: str
    case_insensitive: bool
    _groups: tuple[Matcher | None, ...] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, raw: str, *, case_insensitive: bool) -> NameKey | None:
        value = normalize_person_name(raw)
        if value in ("", "*"):
            return None
        groups: list[Matcher | None] = []
        for group in value.split(PN_GROUP_SEPARATOR):
            if not group:
                groups.append(None)
                continue
            pattern = group.lower() if case_insensitive else group
            groups.append(_matcher(pattern))
        return cls(value, case_insensitive, tuple(groups))

    @property
    def sql_pattern_groups(self) -> list[str]:
        """The non-empty key groups, folded as the stored key column is when case-insensitive."""
        groups = [g for g in self.value.split(PN_GROUP_SEPARATOR) if g]
        return [g.lower() for g in groups]

    def matches(self, stored: str) -> bool:
        normalized = normalize_person_name(stored)
        if not normalized:
            return False
        if self.case_insensitive:
            normalized = normalized.lower()
        stored_groups = normalized.split(PN_GROUP_SEPARATOR)
        if len(self._groups) == 1:
            only = self._groups[0]
            assert only is not None  # a one-group key is never empty
            return any(only(g) for g in stored_groups if g)
        for index, matcher in enumerate(self._groups):
            if matcher is None:
                continue
            group = stored_groups[index] if index < len(stored_groups) else ""
            if not group or not matcher(group):
                return False
        return True


_DATE_RE = re.compile(r"^\d{8}$")
_TIME_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
MIN_TIME = "000000"
MAX_TIME = "235959"


def _parse_date(value: str, keyword: str) -> str:
    if not _DATE_RE.match(value):
        raise InvalidQueryError(f"{keyword}: '{value}' is not a DA value YYYYMMDD", field=keyword)
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise InvalidQueryError(
            f"{keyword}: '{value}' is not a calendar date", field=keyword
        ) from None
    return value


def normalize_time(value: str, *, keyword: str, upper: bool = False) -> str:
    """TM to ``HHMMSS``: missing parts padded as the start (``00``) or end (``59``) of the period.

    Fractions of a second are dropped: stored times have one-second resolution, so an upper
    bound that keeps its whole second still includes every time it names. The ACR-NEMA form
    ``HH:MM:SS`` is accepted (PS3.5 6.2 note).
    """
    match = _TIME_RE.match(value.strip().replace(":", ""))
    if not match:
        raise InvalidQueryError(f"{keyword}: '{value}' is not a TM value HHMMSS", field=keyword)
    hh, mm, ss = match.group(1), match.group(2), match.group(3)
    pad = "59" if upper else "00"
    mm = mm if mm is not None else pad
    ss = ss if ss is not None else pad
    if int(hh) > 23 or int(mm) > 59 or int(ss) > 60:
        raise InvalidQueryError(f"{keyword}: '{value}' is not a valid time", field=keyword)
    return f"{hh}{mm}{min(ss, '59')}"


@dataclass(frozen=True)
class Range:
    """Inclusive range with open ends (``None``); a single value is ``lo == hi``."""

    lo: str | None
    hi: str | None

    def contains(self, value: str) -> bool:
        if self.lo is not None and value < self.lo:
            return False
        return not (self.hi is not None and value > self.hi)


def _split_range(raw: str, keyword: str) -> tuple[str | None, str | None, bool]:
    value = raw.strip()
    if value.count("-") > 1:
        raise InvalidQueryError(f"{keyword}: '{raw}' has more than one '-'", field=keyword)
    if "-" not in value:
        return value, value, False
    lo, hi = (part.strip() for part in value.split("-"))
    if not lo and not hi:
        raise InvalidQueryError(f"{keyword}: '-' alone is not a range", field=keyword)
    return lo or None, hi or None, True


def parse_date_range(raw: str, keyword: str) -> Range | None:
    """DA single value or range (PS3.4 C.2.2.2.5.1); ``None`` for universal matching."""
    if not raw.strip():
        return None
    lo, hi, _ = _split_range(raw, keyword)
    result = Range(
        _parse_date(lo, keyword) if lo else None, _parse_date(hi, keyword) if hi else None
    )
    if result.lo and result.hi and result.lo > result.hi:
        raise InvalidQueryError(f"{keyword}: range '{raw}' ends before it starts", field=keyword)
    return result


def parse_time_range(raw: str, keyword: str) -> Range | None:
    """TM single value or range within one day (PS3.4 C.2.2.2.5.2)."""
    if not raw.strip():
        return None
    lo, hi, is_range = _split_range(raw, keyword)
    lo_n = normalize_time(lo, keyword=keyword) if lo else None
    if is_range:
        hi_n = normalize_time(hi, keyword=keyword, upper=True) if hi else None
    else:
        hi_n = lo_n  # a single value matches by meaning: 1000 == 100000 (C.2.2.2.1.3)
    if lo_n and hi_n and lo_n > hi_n:
        raise InvalidQueryError(
            f"{keyword}: range '{raw}' crosses midnight, which TM ranges cannot", field=keyword
        )
    return Range(lo_n, hi_n)


def combine_date_time(
    dates: Range | None, times: Range | None
) -> tuple[Range | None, Range | None]:
    """Combine SPS Start Date and Time keys (PS3.4 C.2.2.2.5.4, Table K.6-1).

    Returns a range over ``YYYYMMDDHHMMSS`` and, when only a time key was given, a time-of-day
    range that applies on every date. Date 20260705-20260707 with time 1000-1800 is the one
    interval from Jul 5 10:00 to Jul 7 18:00.
    """
    if dates is None:
        return None, times
    t_lo = times.lo if times and times.lo else MIN_TIME
    t_hi = times.hi if times and times.hi else MAX_TIME
    lo = dates.lo + t_lo if dates.lo else None
    hi = dates.hi + t_hi if dates.hi else None
    return Range(lo, hi), None


def parse_uid_list(raw: str) -> tuple[str, ...] | None:
    """List of UID matching (PS3.4 C.2.2.2.2): backslash-separated UIDs, any may match."""
    uids = tuple(u.strip().rstrip("\x00") for u in raw.split(VALUE_SEPARATOR) if u.strip())
    return uids or None
