"""The Query/Retrieve part of the conformance statement (PS3.2 Annex, PS3.4 C.6), generated from
``app.domain.qr`` (levels, keys, matching) and the Q/R adapter's constants, so it cannot drift.

Kept apart from ``dicom_scp.conformance`` (which calls ``qr_section``) so the worklist, MPPS
and storage parts can change without touching this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.config import Settings
from app.domain.qr import (
    ATTRIBUTES,
    Kind,
    QrAttribute,
    QrModel,
    level_in,
    levels_of,
)
from dicom_scp.qr import MAX_CONTEXTS

MATCHING: dict[Kind, str] = {
    Kind.UID: "Single Value, List of UID, Universal",
    Kind.TEXT: "Single Value, Wild Card, Universal",
    Kind.NAME: "Single Value, Wild Card, Universal (person name rules below)",
    Kind.DATE: "Single Value, Range, Universal",
    Kind.TIME: "Single Value, Range, Universal",
    Kind.RETURN: "return key only (a value is ignored, Pending 0xFF01)",
}
# Required (R) keys of PS3.4 Tables C.6-1 to C.6-4 (Patient Root) and C.6-5 to C.6-7 (Study
# Root); the rest of the table is Optional (O), the Unique Keys (U) are flagged in the domain.
REQUIRED = frozenset(
    {"PatientName", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "Modality",
     "SeriesNumber", "InstanceNumber"}
)  # fmt: skip
FIND_STATUSES: tuple[tuple[str, str], ...] = (
    ("0xFF00", "Pending: one per match, with its identifier"),
    ("0xFF01", "Pending: a key with a value the broker does not match on was ignored"),
    ("0x0000", "Success: matching complete"),
    ("0xFE00", "Cancel: a C-CANCEL arrived; no further matches are sent"),
    ("0xA700", "Out of resources: more matches than the result cap"),
    ("0xA900", "Identifier does not match SOP Class: no or wrong Query/Retrieve Level, or a "
               "Unique Key above the level missing or not a single value, or a bad date/time; "
               "Offending Element (0000,0901) names the attribute"),
    ("0xC000", "Unable to process: the index could not be read"),
)  # fmt: skip
RETRIEVE_STATUSES: tuple[tuple[str, str], ...] = (
    ("0xFF00", "Pending: after each C-STORE sub-operation, with the remaining, completed, "
               "failed and warning counts"),
    ("0x0000", "Success: every sub-operation completed"),
    ("0xB000", "Warning: some sub-operations failed; Failed SOP Instance UID List (0008,0058)"),
    ("0xA702", "Failure: every sub-operation failed; Failed SOP Instance UID List"),
    ("0xFE00", "Cancel: a C-CANCEL arrived; remaining sub-operations are not performed"),
    ("0xA801", "C-MOVE only: Move Destination unknown (not a remote AE with the `store` "
               "service, or the association to it was refused)"),
    ("0xC514 / 0xC413", "C-MOVE / C-GET: the identifier could not be parsed (no or wrong level, "
                        "Unique Key missing)"),
)  # fmt: skip


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)
    return [*lines, ""]


def _paragraphs(*paragraphs: str) -> list[str]:
    return [line for paragraph in paragraphs for line in (paragraph, "")]


def _tag(tag: str) -> str:
    return f"({tag[:4]},{tag[4:]})"


def _key_type(model: QrModel, attribute: QrAttribute) -> str:
    if attribute.unique and level_in(model, attribute) is attribute.level:
        return "U"
    return "R" if attribute.keyword in REQUIRED or attribute.unique else "O"


def _key_rows(model: QrModel) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for level in levels_of(model):
        for attribute in ATTRIBUTES:
            if level_in(model, attribute) is level:
                rows.append(
                    (
                        level.name,
                        attribute.keyword,
                        _tag(attribute.tag),
                        _key_type(model, attribute),
                        MATCHING[attribute.kind],
                    )
                )
    return rows


def _keys() -> list[str]:
    lines: list[str] = []
    for model, title in (
        (QrModel.PATIENT_ROOT, "Patient Root"),
        (QrModel.STUDY_ROOT, "Study Root"),
    ):
        lines += [f"##### {title} keys", ""]
        lines += _table(("Level", "Attribute", "Tag", "Type", "Matching"), _key_rows(model))
    return lines


def qr_section(settings: Settings, number: str = "3.5.4") -> list[str]:
    """Section ``number``: Query/Retrieve FIND, MOVE and GET."""
    cap = settings.worklist.max_results
    cap_text = (
        f"at most {cap} matches per query (`BROKER_MWL_MAX_RESULTS`, shared with the worklist); "
        "when more match, 0xA700 follows the last Pending"
        if cap
        else "no cap (`BROKER_MWL_MAX_RESULTS` is 0)"
    )
    case = "ignoring case" if settings.worklist.name_case_insensitive else "case-sensitive"
    lines = [f"#### {number} Query/Retrieve (Patient Root and Study Root: FIND, MOVE, GET)", ""]
    lines += _paragraphs(
        "The broker answers from the index of the instances it stores. Levels: PATIENT "
        "(Patient Root only), STUDY, SERIES, IMAGE. Queries are hierarchical (PS3.4 "
        "C.4.1.2.2.1): the identifier must hold Query/Retrieve Level (0008,0052) and, for each "
        "level above it, the Unique Key with a single value. Relational queries and retrieves "
        "are not supported: the SOP Class Extended Negotiation sub-item is not answered. Keys "
        "of levels below the query level, sequences, private elements and group lengths are "
        "ignored (neither matched nor returned). "
        "Combined date-time matching and fuzzy semantic person name matching are not supported.",
        "Matching (PS3.4 C.2.2.2): an entity whose stored value is empty fails to match any "
        "non-empty key; `*` alone and zero length are universal; Wild Card `*` and `?`; "
        "a List of UID matches any of its UIDs; date ranges `A-B`, `A-`, `-B`; time ranges "
        f"within a day, times compared by meaning (`1000` = `100000`). Person names: {case} "
        "(`BROKER_MWL_NAME_CASE_INSENSITIVE`), a key without `=` compared with each component "
        "group of the stored name.",
        "Responses hold only the requested keys (a requested attribute the broker has no "
        "value for is returned with zero length when it is in the tables below, and from the "
        "stored attributes of the entity otherwise, or left out), plus Query/Retrieve Level and "
        "Retrieve AE Title (0008,0054) = the broker's AE title, and Specific Character Set "
        "when a value needs it (same rules as the worklist). Number of ... Related ... and "
        "Modalities in Study are computed from the index. Matches come in the order the "
        f"instances were indexed; result cap: {cap_text}. A C-CANCEL is honoured before each "
        "further match.",
    )
    lines += _keys()
    lines += ["##### C-FIND statuses", ""]
    lines += _table(("Status", "When the broker sends it"), FIND_STATUSES)
    lines += ["##### C-MOVE and C-GET", ""]
    lines += _paragraphs(
        "The identifier must hold Query/Retrieve Level and the Unique Keys down to that level "
        "(a List of UID at the retrieve level). All instances below the matching entities are "
        "sent by C-STORE sub-operations, in the order they were indexed. The instance list is "
        "read once, before the first sub-operation.",
        "No transcoding: each stored Part 10 file's data set is sent byte for byte as it was "
        "received, in the transfer syntax it is stored in. A sub-operation for which the peer "
        "accepted no presentation context with that SOP class and exactly that transfer syntax "
        "fails (counted as failed, its SOP Instance UID in the Failed SOP Instance UID List).",
        "C-MOVE: the Move Destination must be a known remote AE with the `store` service "
        "(REST API, remote AEs); the broker opens a new association to it (calling AE title "
        f"`{settings.dicom.ae_title}`, called AE title = Move Destination) proposing one "
        "presentation context per SOP class and stored transfer syntax of the instances (at "
        f"most {MAX_CONTEXTS}), SCU role; over TLS (section 8) when the remote AE is flagged "
        "`tls`, presenting `BROKER_TLS_CERT` and checking the destination against "
        "`BROKER_TLS_CA`. The C-STORE "
        "sub-operations carry Move Originator AE Title (the C-MOVE requestor) and Move "
        "Originator Message ID.",
        "C-GET: the sub-operations run on the same association, on the storage presentation "
        "contexts the requestor proposed with the SCP role (SCP/SCU Role Selection, PS3.7 "
        "D.3.3.4). The broker accepts both proposed roles for every storage SOP class, with "
        "the first transfer syntax of the requestor's list that it knows, preferring Explicit "
        "VR Little Endian, then Implicit VR Little Endian.",
    )
    lines += ["##### C-MOVE and C-GET statuses", ""]
    return lines + _table(("Status", "When the broker sends it"), RETRIEVE_STATUSES)
