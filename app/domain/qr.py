"""Query/Retrieve identifiers: the Patient Root and Study Root information models (PS3.4 C.6.1,
C.6.2) and the parsing of a C-FIND, C-MOVE or C-GET identifier into matching keys.

Queries are hierarchical (PS3.4 C.4.1.2.2.1; relational queries are not negotiated): the
identifier names a Query/Retrieve Level and, for every level above it, the Unique Key with a
single value. Keys of levels below the query level are ignored (neither matched nor returned).

Matching (PS3.4 C.2.2.2): Single Value, List of UID, Wild Card (``*``, ``?``), date and time
Range, Universal (zero length or ``*``). A stored value that is empty fails to match any
non-empty key. Person names follow ``WorklistSettings.name_case_insensitive``.

Elements are named by their DICOM JSON tag (eight hex digits), so attributes outside the table
below can still be returned from the stored ``attributes`` when the identifier asks for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from app.domain.errors import InvalidQueryError
from app.domain.matching import (
    NameKey,
    Range,
    TextKey,
    has_wildcard,
    normalize_time,
    parse_date_range,
    parse_time_range,
    parse_uid_list,
)

QUERY_RETRIEVE_LEVEL = "00080052"
SPECIFIC_CHARACTER_SET = "00080005"
RETRIEVE_AE_TITLE = "00080054"


class QrModel(StrEnum):
    PATIENT_ROOT = "patient"
    STUDY_ROOT = "study"


class QrLevel(IntEnum):
    """Query/Retrieve Level (0008,0052), top to bottom."""

    PATIENT = 0
    STUDY = 1
    SERIES = 2
    IMAGE = 3


class Kind(StrEnum):
    """How a key is matched (PS3.4 C.2.2.2); RETURN keys are answered, never matched."""

    UID = "uid"
    TEXT = "text"
    NAME = "name"
    DATE = "date"
    TIME = "time"
    RETURN = "return"


@dataclass(frozen=True)
class QrAttribute:
    tag: str
    keyword: str
    vr: str
    level: QrLevel  # its level in the Patient Root model (PS3.4 Table C.6-1 to C.6-4)
    kind: Kind
    unique: bool = False


_P, _ST, _SE, _IM = QrLevel.PATIENT, QrLevel.STUDY, QrLevel.SERIES, QrLevel.IMAGE
ATTRIBUTES: tuple[QrAttribute, ...] = (
    QrAttribute("00100010", "PatientName", "PN", _P, Kind.NAME),
    QrAttribute("00100020", "PatientID", "LO", _P, Kind.TEXT, unique=True),
    QrAttribute("00100021", "IssuerOfPatientID", "LO", _P, Kind.TEXT),
    QrAttribute("00100030", "PatientBirthDate", "DA", _P, Kind.DATE),
    QrAttribute("00100040", "PatientSex", "CS", _P, Kind.TEXT),
    QrAttribute("00201200", "NumberOfPatientRelatedStudies", "IS", _P, Kind.RETURN),
    QrAttribute("00201202", "NumberOfPatientRelatedSeries", "IS", _P, Kind.RETURN),
    QrAttribute("00201204", "NumberOfPatientRelatedInstances", "IS", _P, Kind.RETURN),
    QrAttribute("0020000D", "StudyInstanceUID", "UI", _ST, Kind.UID, unique=True),
    QrAttribute("00080020", "StudyDate", "DA", _ST, Kind.DATE),
    QrAttribute("00080030", "StudyTime", "TM", _ST, Kind.TIME),
    QrAttribute("00080050", "AccessionNumber", "SH", _ST, Kind.TEXT),
    QrAttribute("00200010", "StudyID", "SH", _ST, Kind.TEXT),
    QrAttribute("00080090", "ReferringPhysicianName", "PN", _ST, Kind.NAME),
    QrAttribute("00081030", "StudyDescription", "LO", _ST, Kind.TEXT),
    QrAttribute("00080061", "ModalitiesInStudy", "CS", _ST, Kind.TEXT),
    QrAttribute("00201206", "NumberOfStudyRelatedSeries", "IS", _ST, Kind.RETURN),
    QrAttribute("00201208", "NumberOfStudyRelatedInstances", "IS", _ST, Kind.RETURN),
    QrAttribute("0020000E", "SeriesInstanceUID", "UI", _SE, Kind.UID, unique=True),
    QrAttribute("00080060", "Modality", "CS", _SE, Kind.TEXT),
    QrAttribute("00200011", "SeriesNumber", "IS", _SE, Kind.TEXT),
    QrAttribute("0008103E", "SeriesDescription", "LO", _SE, Kind.TEXT),
    QrAttribute("00201209", "NumberOfSeriesRelatedInstances", "IS", _SE, Kind.RETURN),
    QrAttribute("00080018", "SOPInstanceUID", "UI", _IM, Kind.UID, unique=True),
    QrAttribute("00080016", "SOPClassUID", "UI", _IM, Kind.UID),
    QrAttribute("00200013", "InstanceNumber", "IS", _IM, Kind.TEXT),
)
BY_TAG: dict[str, QrAttribute] = {a.tag: a for a in ATTRIBUTES}
BY_KEYWORD: dict[str, QrAttribute] = {a.keyword: a for a in ATTRIBUTES}
_PATIENT_COUNTS = frozenset(
    {"NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
     "NumberOfPatientRelatedInstances"}
)  # fmt: skip


def levels_of(model: QrModel) -> tuple[QrLevel, ...]:
    if model is QrModel.STUDY_ROOT:
        return (QrLevel.STUDY, QrLevel.SERIES, QrLevel.IMAGE)
    return tuple(QrLevel)


def level_in(model: QrModel, attribute: QrAttribute) -> QrLevel | None:
    """The level of ``attribute`` in ``model``: in the Study Root model the patient attributes
    belong to the study level and the patient counts do not exist (PS3.4 Table C.6-5)."""
    if model is QrModel.STUDY_ROOT and attribute.level is QrLevel.PATIENT:
        return None if attribute.keyword in _PATIENT_COUNTS else QrLevel.STUDY
    return attribute.level


def unique_key(model: QrModel, level: QrLevel) -> QrAttribute:
    found = next(a for a in ATTRIBUTES if a.unique and a.level is level)
    assert level_in(model, found) is level
    return found


Matcher = Callable[[str], bool]


@dataclass(frozen=True)
class Condition:
    """One matching key: ``matches`` gets the stored value(s) of its attribute."""

    attribute: QrAttribute
    raw: str
    uids: tuple[str, ...] | None = None
    text: TextKey | None = None
    name: NameKey | None = None
    range: Range | None = None

    def matches(self, stored: str | list[str]) -> bool:
        values = stored if isinstance(stored, list) else [stored]
        return any(self._one(v.strip()) for v in values)

    def _one(self, value: str) -> bool:
        if not value:
            return False
        if self.uids is not None:
            return value in self.uids
        if self.text is not None:
            return self.text.matches(value)
        if self.name is not None:
            return self.name.matches(value)
        if self.range is not None:
            if self.attribute.kind is Kind.TIME:
                try:
                    value = normalize_time(value, keyword=self.attribute.keyword)
                except InvalidQueryError:
                    return False
            return self.range.contains(value)
        return True


@dataclass(frozen=True)
class QrQuery:
    """A parsed identifier. ``requested`` are the tags to answer, in identifier order;
    ``unsupported`` the non-empty keys the broker does not match on (Pending 0xFF01)."""

    model: QrModel
    level: QrLevel
    conditions: tuple[Condition, ...]
    requested: tuple[str, ...]
    unsupported: tuple[str, ...] = ()
    charset: tuple[str, ...] = field(default=())

    def condition(self, keyword: str) -> Condition | None:
        return next((c for c in self.conditions if c.attribute.keyword == keyword), None)

    def at(self, level: QrLevel) -> tuple[Condition, ...]:
        """The conditions on attributes of ``level`` in this model."""
        return tuple(c for c in self.conditions if level_in(self.model, c.attribute) is level)


def parse_level(raw: str | None, model: QrModel) -> QrLevel:
    value = (raw or "").strip().upper()
    try:
        level = QrLevel[value]
    except KeyError:
        raise InvalidQueryError(
            f"QueryRetrieveLevel: '{value}' is not PATIENT, STUDY, SERIES or IMAGE",
            field="QueryRetrieveLevel",
        ) from None
    if level not in levels_of(model):
        raise InvalidQueryError(
            f"QueryRetrieveLevel: {value} is no level of the Study Root model",
            field="QueryRetrieveLevel",
        )
    return level


def _condition(attribute: QrAttribute, raw: str, *, name_case_insensitive: bool) -> Condition:
    keyword = attribute.keyword
    if attribute.kind is Kind.UID:
        return Condition(attribute, raw, uids=parse_uid_list(raw))
    if attribute.kind is Kind.NAME:
        return Condition(
            attribute, raw, name=NameKey.parse(raw, case_insensitive=name_case_insensitive)
        )
    if attribute.kind is Kind.DATE:
        return Condition(attribute, raw, range=parse_date_range(raw, keyword))
    if attribute.kind is Kind.TIME:
        return Condition(attribute, raw, range=parse_time_range(raw, keyword))
    return Condition(attribute, raw, text=TextKey.parse(raw))


def _is_universal(attribute: QrAttribute, raw: str) -> bool:
    value = raw.strip().rstrip("\x00")
    return not value or (value == "*" and attribute.kind is not Kind.UID)


def _check_single(attribute: QrAttribute, raw: str) -> None:
    """Unique Keys above the query level: one value, no wildcard (PS3.4 C.4.1.2.2.1)."""
    value = raw.strip()
    if not value or "\\" in value or has_wildcard(value):
        raise InvalidQueryError(
            f"{attribute.keyword}: a single value is required above the query level",
            field=attribute.keyword,
        )


def parse_query(
    model: QrModel,
    elements: Mapping[str, str],
    *,
    name_case_insensitive: bool,
    retrieve: bool = False,
) -> QrQuery:
    """Parse an identifier given as DICOM JSON tag -> text value (PN as ``A=I=P``, multiple
    values joined by ``\\``). ``retrieve`` (C-MOVE, C-GET, PS3.4 C.4.2.2.1) also requires the
    Unique Key of the retrieve level itself (a single value or a list of UIDs)."""
    level = parse_level(elements.get(QUERY_RETRIEVE_LEVEL), model)
    for above in levels_of(model):
        if above > level or (above == level and not retrieve):
            break
        key = unique_key(model, above)
        raw = elements.get(key.tag, "")
        if above < level:
            _check_single(key, raw)
        elif not raw.strip():
            raise InvalidQueryError(
                f"{key.keyword}: required to retrieve at the {level.name} level",
                field=key.keyword,
            )
    conditions: list[Condition] = []
    unsupported: list[str] = []
    requested: list[str] = []
    for tag, raw in elements.items():
        attribute = BY_TAG.get(tag)
        attr_level = level_in(model, attribute) if attribute else None
        if attribute is not None and (attr_level is None or attr_level > level):
            continue  # below the query level, or not in this model: ignored
        if tag in (QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET):
            continue
        requested.append(tag)
        if attribute is None or attribute.kind is Kind.RETURN:
            if raw.strip():
                unsupported.append(tag)
            continue
        if _is_universal(attribute, raw):
            continue
        conditions.append(_condition(attribute, raw, name_case_insensitive=name_case_insensitive))
    return QrQuery(model, level, tuple(conditions), tuple(requested), tuple(unsupported))


def describe(query: QrQuery) -> dict[str, Any]:
    """A loggable summary without patient data: level and the keywords matched on."""
    return {
        "level": query.level.name,
        "keys": sorted(c.attribute.keyword for c in query.conditions),
    }
