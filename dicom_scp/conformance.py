"""The DICOM Conformance Statement (PS3.2), generated from the configuration and the code's tables.

``render(settings)`` returns Markdown; ``mwl-broker conformance`` prints it and ``make conformance``
writes ``docs/conformance.md``. The SOP classes, transfer syntaxes, statuses, matching keys and
return keys come from the tables the broker itself runs on, so the statement cannot drift from
the code; the prose states the behaviour those tables do not carry.

It lives beside the DICOM adapter it describes, reading that adapter's own tables
(``dicom_scp.server`` for ``SOP_CLASSES`` and ``TRANSFER_SYNTAXES``, ``dicom_scp.status`` for
``DimseStatus`` and ``NStatus``) and the core's; the command reaches it through the composition
root (``app.runtime.conformance_statement``), so ``app/`` outside the root imports no adapter.

The output is deterministic (no timestamps) and depends only on the settings that affect DICOM
(``DICOM_SETTINGS``), so the default settings always give the same document.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_description, tag_for_keyword
from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from app.config import ENV, OFF, ClientCertificates, Settings
from app.domain.commitment import (
    REQUEST_STORAGE_COMMITMENT,
    WELL_KNOWN_INSTANCE_UID,
    CommitmentState,
    EventType,
    FailureReason,
)
from app.domain.mwl_attributes import (
    BY_KEYWORD,
    BY_TAG,
    MWL_ATTRIBUTES,
    SPS_SEQUENCE_TAG,
    TABLE_K6_1,
    Level,
    ModelKey,
    MwlAttribute,
)
from app.domain.status import FINAL_STATUSES, SpsStatus
from app.domain.worklist import SPS_LEVEL_KEYS, SUPPORTED_MATCHING_KEYS
from app.domain.worklist_policy import PolicyKind
from app.tls import PROFILE, TLS12_CIPHERS
from dicom_scp import conformance_storage
from dicom_scp.commitment_report import TRANSFER_SYNTAXES as REPORT_TRANSFER_SYNTAXES
from dicom_scp.conformance_qr import qr_section
from dicom_scp.server import ROLES, SOP_CLASSES, TRANSFER_SYNTAXES
from dicom_scp.status import DimseStatus, NStatus
from dicom_scp.transport import MAX_COMMAND_BYTES, MAX_DATA_SET_BYTES, UNSTATED_PDU_CEILING

PRODUCT = "mwl-broker"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
UTF8 = "ISO_IR 192"

# The settings that change what the statement says; every other setting is left out of it.
DICOM_SETTINGS: tuple[str, ...] = (
    "ae_title",
    "dicom_bind_host",
    "dicom_port",
    "dicom_tls_port",
    "dicom_workers",
    "tls_client_cert",
    "require_called_ae",
    "allowed_calling_aes",
    "max_associations",
    "max_associations_per_ae",
    "dicom_max_connections",
    "dicom_artim_timeout",
    "max_association_seconds",
    "max_associate_rq_bytes",
    "acse_timeout",
    "dimse_timeout",
    "network_timeout",
    "max_pdu_size",
    "mwl_name_case_insensitive",
    "mwl_max_results",
    "mwl_default_policy",
    "ris_hl7_endpoint",
    "ris_hl7_message",
    "mpps_forward",
    "stgcmt_report_delay",
    "outbox_retry_min",
    "outbox_retry_max",
    *conformance_storage.SETTINGS,
)

# Required matching keys of PS3.4 Table K.6-1; every other supported key is optional.
REQUIRED_MATCHING_KEYS = frozenset(
    {
        "ScheduledStationAETitle",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "Modality",
        "ScheduledPerformingPhysicianName",
        "PatientName",
        "PatientID",
    }
)

# Defined Terms of Specific Character Set (PS3.3 C.12.1.1.2); the statement lists those pydicom
# can encode. (pydicom also knows aliases such as "ISO_IR 6", which are not Defined Terms.)
SINGLE_CODE_TERMS: tuple[str, ...] = (
    "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 144", "ISO_IR 127",
    "ISO_IR 126", "ISO_IR 138", "ISO_IR 148", "ISO_IR 203", "ISO_IR 166", "ISO_IR 13",
    "ISO_IR 192", "GB18030", "GBK",
)  # fmt: skip
EXTENSION_TERMS: tuple[str, ...] = (
    "ISO 2022 IR 6", "ISO 2022 IR 100", "ISO 2022 IR 101", "ISO 2022 IR 109",
    "ISO 2022 IR 110", "ISO 2022 IR 144", "ISO 2022 IR 127", "ISO 2022 IR 126",
    "ISO 2022 IR 138", "ISO 2022 IR 148", "ISO 2022 IR 203", "ISO 2022 IR 13",
    "ISO 2022 IR 166", "ISO 2022 IR 87", "ISO 2022 IR 159", "ISO 2022 IR 149",
    "ISO 2022 IR 58",
)  # fmt: skip

# What each status means here. Every DimseStatus must be described (render fails otherwise).
STATUS_USE: dict[DimseStatus, tuple[str, str]] = {
    DimseStatus.SUCCESS: (
        "Success",
        "Matching is complete: after the last Pending, or alone when nothing matched. "
        "Also the answer to every C-ECHO.",
    ),
    DimseStatus.PENDING: (
        "Pending",
        "One per matching worklist item, with its identifier, when every key with a value was "
        "matched on. Return keys (zero length) and elements that are no key of the model "
        "(Query/Retrieve Level, private elements, group lengths) never cause a warning.",
    ),
    DimseStatus.PENDING_WARNING: (
        "Pending (warning)",
        "One per matching item, when the request holds a key with a value the broker does not "
        "match on (an Optional Key not supported: ignored for matching, so the matches may be "
        "more than asked for).",
    ),
    DimseStatus.CANCEL: (
        "Cancel",
        "A C-CANCEL arrived before matching completed; no further matches are sent.",
    ),
    DimseStatus.OUT_OF_RESOURCES: (
        "Refused: out of resources",
        "More items match than the result cap allows; sent after the capped number of "
        "Pendings, with an Error Comment asking to narrow the query.",
    ),
    DimseStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: (
        "Error: identifier does not match SOP class",
        "The identifier does not fit the worklist model: more than one Scheduled Procedure "
        "Step Sequence item, an invalid DA/TM value "
        "or range, an SPS Status that is not a Defined Term, or an identifier that cannot be "
        "decoded whole (an element whose length runs past the end of the identifier or of its "
        "item, a sequence or item without its delimiter, an invalid VR: every element is "
        "checked before any is used). Error Comment (0000,0902) and, when known, Offending "
        "Element (0000,0901).",
    ),
    DimseStatus.UNABLE_TO_PROCESS: (
        "Failed: unable to process",
        "The worklist could not be read (for example the database is unreachable); may "
        "follow Pendings.",
    ),
}


# ---------------------------------------------------------------------------------------------
# Formatting helpers


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _keyword_tag(keyword: str) -> int:
    attribute = BY_KEYWORD.get(keyword)
    if attribute is not None:
        return attribute.tag
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"{keyword} is not a DICOM keyword")
    return tag


def _name(tag: int) -> str:
    return dictionary_description(tag)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return [*lines, ""]


def _paragraphs(*paragraphs: str) -> list[str]:
    return [line for paragraph in paragraphs for line in (paragraph, "")]


def _section(title: str, *paragraphs: str) -> list[str]:
    return [title, "", *_paragraphs(*paragraphs)]


def _bullets(items: Iterable[str]) -> list[str]:
    return [*(f"- {item}" for item in items), ""]


def _setting_value(value: object) -> str:
    if value is None:
        return OFF
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "(empty)"
    return str(value)


def _env_name(field: str) -> str:
    return f"BROKER_{field.upper()}"


def _tls_port(settings: Settings) -> str:
    port = settings.dicom.tls_port
    return f"{OFF} (`{_env_name('dicom_tls_port')}`)" if port is None else str(port)


def _ports(settings: Settings) -> str:
    """The plain port and, with TLS on, the TLS port, as the statement says them."""
    text = f"TCP port {settings.dicom.port}"
    if settings.dicom.tls_port is not None:
        text += f" and, over TLS (section 8), TCP port {settings.dicom.tls_port}"
    return text


def _product_version() -> str:
    try:
        return package_version(PRODUCT)
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _reject(result: int, source: int, reason: int, text: str) -> str:
    return f"A-ASSOCIATE-RJ result {result}, source {source}, reason {reason} ({text})"


# ---------------------------------------------------------------------------------------------
# Sections


def _header(settings: Settings) -> list[str]:
    lines = [
        f"# {PRODUCT} {_product_version()}: DICOM Conformance Statement",
        "",
        "<!-- Generated by `mwl-broker conformance` from the configuration and the code's own "
        "tables. Do not edit: run `make conformance`. -->",
        "",
    ]
    rows = [
        ("Product", PRODUCT),
        ("Version", _product_version()),
        ("AE Title", f"`{settings.dicom.ae_title}`"),
        ("DICOM port (TCP)", str(settings.dicom.port)),
        ("DICOM TLS port (TCP)", _tls_port(settings)),
        ("Implementation Class UID", str(PYNETDICOM_IMPLEMENTATION_UID)),
        ("Implementation Version Name", PYNETDICOM_IMPLEMENTATION_VERSION),
    ]
    return lines + _table(("Item", "Value"), rows)


def _overview() -> list[str]:
    lines = _section(
        "## 1. Overview",
        f"{PRODUCT} is a Modality Worklist and MPPS broker: it keeps worklist items (one "
        "Scheduled Procedure Step with its Requested Procedure, Imaging Service Request, Visit "
        "and Patient), answers Modality Worklist queries from modalities, and records their "
        "Modality Performed Procedure Steps. As a Storage SCP it keeps the instances modalities "
        "send and links each study to its order (section 3.5.6); it answers Query/Retrieve "
        "requests over the instances it stores and, as Storage Commitment Push Model SCP, "
        "commits to their safekeeping. It initiates associations only to forward MPPS to "
        "configured downstream MPPS SCPs (section 3.5.3.5), to send the instances of a C-MOVE "
        "to its Move Destination (section 3.5.4) and to report storage commitment results "
        "(section 3.5.5), and supports no other DICOM service than the ones below.",
    )
    rows = [(name, uid, "No", "Yes") for uid, name in SOP_CLASSES]
    rows.append(
        (
            f"Storage SOP Classes ({len(conformance_storage.STORAGE_SOP_CLASSES)}: Storage SCP, "
            "and C-STORE sub-operations of C-MOVE and C-GET)",
            "see 3.5.6.4",
            "Yes",
            "Yes",
        )
    )
    return lines + _table(("SOP Class", "UID", "User of Service (SCU)", "Provider (SCP)"), rows)


def _implementation_model(settings: Settings) -> list[str]:
    return _section(
        "## 2. Implementation Model",
        "### 2.1 Application Data Flow",
        "Worklist items are created, updated and moved between statuses through the broker's "
        "REST API (or imported from worklist files with `mwl-broker import-wl`) and stored in "
        "its database. A modality queries them with Modality Worklist C-FIND; the broker "
        "answers from the database. Any peer may verify the connection with C-ECHO. Instances "
        "sent with C-STORE are written to files as received and indexed in the database.",
        "### 2.2 Functional Definition of AEs",
        f"One Application Entity, `{settings.dicom.ae_title}`, listens on TCP port "
        f"{settings.dicom.port} for associations. Each accepted association is served in its "
        "own thread; each C-FIND is answered by streaming the matching items from the database, "
        "one Pending response per item.",
        "### 2.3 Sequencing of Real-World Activities",
        "An item is visible to queries as soon as it is stored. A step moved to a final status "
        f"({_final_statuses()}) drops out of default queries (see 3.5.2.6).",
    )


def _final_statuses() -> str:
    return ", ".join(s.value for s in SpsStatus if s in FINAL_STATUSES)


def _ae_specification(settings: Settings) -> list[str]:
    lines = _section(
        f"## 3. AE Specification: `{settings.dicom.ae_title}`",
        "### 3.1 SOP Classes",
        f"`{settings.dicom.ae_title}` provides Standard Conformance to the following SOP Classes:",
    )
    rows = [(name, uid, "SCP") for uid, name in SOP_CLASSES]
    rows.append(("Every storage SOP class of 3.5.6.4", "see 3.5.6.4", "SCP"))
    return lines + _table(("SOP Class", "UID", "Role"), rows)


def _association_policies(settings: Settings) -> list[str]:
    pdu = (
        f"{settings.dicom.max_pdu_size} bytes"
        if settings.dicom.max_pdu_size
        else "unlimited (0: no limit is stated)"
    )
    return _section(
        "### 3.2 Association Policies",
        "#### 3.2.1 General",
        f"Application Context Name: {APPLICATION_CONTEXT} (DICOM Application Context). "
        f"Maximum PDU size received (Maximum Length sub-item): {pdu}; PDUs sent are limited to "
        "the maximum length the peer states.",
        "#### 3.2.2 Number of Associations",
        f"At most {settings.dicom.max_associations} associations are established at the same "
        f"time (`{_env_name('max_associations')}`), of which {_per_ae(settings)} may be of "
        f"one Calling AE Title (`{_env_name('max_associations_per_ae')}`, 0: no limit); one "
        "more is refused with "
        f"{_reject(2, 3, 2, 'rejected-transient, service provider, local-limit-exceeded')}. "
        "Only established associations count: a connection that has not yet sent its "
        "A-ASSOCIATE-RQ takes no association slot. At most "
        f"{settings.dicom.max_connections} TCP connections are open at once "
        f"(`{_env_name('dicom_max_connections')}`); one more is closed at once, without any "
        "PDU. Associations the broker initiates (3.3) are not counted." + _per_worker(settings),
        "The outbox opens its associations (MPPS forwards, commitment reports, section 3.3) "
        "one at a time; each C-MOVE opens its own to the Move Destination (3.5.4).",
        "#### 3.2.3 Asynchronous Nature",
        "Asynchronous operations are not supported: an Asynchronous Operations Window "
        "sub-item is not answered, so the maximum number of operations invoked and performed "
        "is 1 each. Operations on one association are processed one after the other.",
        "#### 3.2.4 Implementation Identifying Information",
        f"Implementation Class UID: {PYNETDICOM_IMPLEMENTATION_UID}; Implementation Version "
        f"Name: {PYNETDICOM_IMPLEMENTATION_VERSION} (the DICOM toolkit, pynetdicom).",
    )


def _per_worker(settings: Settings) -> str:
    workers = settings.dicom.workers
    if workers == 1:
        return ""
    return (
        f" These limits hold in each of the {workers} processes that serve the DICOM ports "
        f"(`{_env_name('dicom_workers')}`), which share the connections the operating system "
        "hands them."
    )


def _per_ae(settings: Settings) -> str:
    limit = settings.dicom.max_associations_per_ae
    return str(limit) if limit else "any number"


def _transport_rules(settings: Settings) -> list[str]:
    dicom = settings.dicom
    stated = dicom.max_pdu_size or f"{UNSTATED_PDU_CEILING} (no Maximum Length is stated)"
    return _paragraphs("Bounds on every connection (PS3.8 9.1.5, 9.3.1):") + _bullets(
        [
            f"A connection must send its whole A-ASSOCIATE-RQ within {dicom.artim_timeout:g} s "
            f"of connecting (ARTIM, `{_env_name('dicom_artim_timeout')}`), else it is closed.",
            "Before association, any PDU other than A-ASSOCIATE-RQ, and any PDU of an unknown "
            "type, is answered with A-ABORT (source 2, reason 2 unexpected-PDU or 1 "
            "unrecognized-PDU) and the connection is closed.",
            f"An A-ASSOCIATE-RQ longer than {dicom.max_associate_rq_bytes} bytes "
            f"(`{_env_name('max_associate_rq_bytes')}`) and a P-DATA-TF PDU longer than "
            f"{stated} bytes are answered with A-ABORT (source 2, reason 6 "
            "invalid-PDU-parameter-value) as soon as their header is read: the body is never "
            "read.",
            f"A command set longer than {MAX_COMMAND_BYTES} bytes, or a data set of any SOP "
            f"Class but Storage longer than {MAX_DATA_SET_BYTES} bytes, summed over its "
            "P-DATA-TF fragments, is answered with the same A-ABORT.",
            f"An association with no whole PDU received or sent for {dicom.network_timeout:g} s "
            f"(`{_env_name('network_timeout')}`), or open for longer than "
            f"{dicom.max_association_seconds:g} s (`{_env_name('max_association_seconds')}`), "
            "is closed (TCP close), even while the broker waits to read from or to write to a "
            "peer that does not move. TCP keep-alive is on for every connection.",
        ]
    )


def _called_ae_rule(settings: Settings) -> str:
    if not settings.dicom.require_called_ae:
        return (
            f"The Called AE Title is not checked (`{_env_name('require_called_ae')}` is false); "
            "any Called AE Title is accepted."
        )
    return (
        f"The Called AE Title must be `{settings.dicom.ae_title}` (compared exactly, "
        "case-sensitive; "
        "leading and trailing spaces are not significant), else "
        f"{_reject(1, 1, 7, 'called-AE-title-not-recognized')}."
    )


def _calling_ae_rule(settings: Settings) -> str:
    if not settings.dicom.allowed_calling_aes:
        return f"Any Calling AE Title is accepted (`{_env_name('allowed_calling_aes')}` is empty)."
    allowed = ", ".join(
        f"`{ae}`" + (f" ({', '.join(sorted(services))})" if services is not None else "")
        for ae, services in settings.dicom.calling_ae_services.items()
    )
    return (
        f"Only these Calling AE Titles are accepted: {allowed}; any other is refused with "
        f"{_reject(1, 1, 3, 'calling-AE-title-not-recognized')}. An AE listed with services "
        "(echo: Verification; find: Modality Worklist FIND; mpps: the MPPS SOP Classes; "
        "store, commit, move, get: Storage, Storage Commitment, and the Query/Retrieve MOVE "
        "and GET SOP Classes; get includes the Storage contexts its C-STORE sub-operations "
        "use) may use only those: a presentation context of any other SOP "
        "Class is answered with result 3 (abstract-syntax-not-supported), so its requests "
        "cannot be sent. An AE listed without services may use every SOP Class of section 3.1."
    )


def _acceptance_policy(settings: Settings) -> list[str]:
    lines = _section(
        "### 3.3 Association Initiation Policy",
        f"`{settings.dicom.ae_title}` initiates associations, as its own AE title, only to "
        "forward MPPS (3.5.3.5), for the C-STORE sub-operations of a C-MOVE (3.5.4) and to "
        "send a Storage Commitment N-EVENT-REPORT on a new association (3.5.5.3). An MPPS "
        "forward or a commitment report carries one message and is released after the "
        "response; a peer that cannot be reached is tried again later (outbox retry with "
        "back-off).",
        "### 3.4 Association Acceptance Policy",
        f"`{settings.dicom.ae_title}` accepts associations on {_ports(settings)} when:",
    )
    lines += _bullets(
        [
            _calling_ae_rule(settings),
            _called_ae_rule(settings),
            f"fewer than {settings.dicom.max_associations} associations are established"
            + (
                f" and fewer than {settings.dicom.max_associations_per_ae} of them are of its "
                "Calling AE Title"
                if settings.dicom.max_associations_per_ae
                else ""
            )
            + ", else "
            f"{_reject(2, 3, 2, 'local-limit-exceeded')}.",
        ]
    )
    lines += _paragraphs(
        "When several checks fail, the first one listed decides the rejection reason: a "
        "permanent rejection is never reported as a transient one.",
        f"Timeouts: association setup and, after a rejection or release, the wait for the peer "
        f"to close (ARTIM) {settings.dicom.artim_timeout:g} s; waiting for a DIMSE message "
        f"{settings.dicom.dimse_timeout:g} s; an association without network activity for "
        f"{settings.dicom.network_timeout:g} s is aborted (A-ABORT, or a TCP close when the "
        f"peer does not read). `{_env_name('acse_timeout')}` "
        f"({settings.dicom.acse_timeout:g} s) applies to the associations the broker opens "
        "(MPPS forward, C-MOVE sub-operations).",
        "SCP/SCU Role Selection (PS3.7 D.3.3.4) is accepted for storage SOP classes (C-GET, "
        "3.5.4) and for Storage Commitment Push Model, where a proposed SCU role of the "
        "requestor is accepted and a proposed SCP role refused (3.5.5); for the other SOP "
        "classes the requestor is SCU and the broker SCP. SOP Class Extended Negotiation is "
        "not supported (no fuzzy semantic matching of person names, no timezone query "
        "adjustment). User Identity Negotiation is not supported: the sub-item is ignored and "
        "no response is returned.",
    )
    return lines + _transport_rules(settings) + _presentation_contexts()


def _transfer_syntax(uid: str) -> str:
    return f"{UID(uid).name} {uid}"


def _presentation_contexts() -> list[str]:
    lines = _section(
        "#### 3.4.1 Presentation Contexts",
        "Each abstract syntax below is accepted with the first transfer syntax of the proposed "
        "list that the broker supports. Any other abstract syntax is rejected "
        "(abstract-syntax-not-supported). At most 128 presentation contexts per association.",
    )
    syntaxes = "<br>".join(_transfer_syntax(uid) for uid in TRANSFER_SYNTAXES)
    rows = [(f"{name}<br>{uid}", syntaxes, "SCP", _negotiation(uid)) for uid, name in SOP_CLASSES]
    rows.append(conformance_storage.context_row())
    headers = ("Abstract Syntax", "Transfer Syntaxes", "Role", "Extended Negotiation")
    return lines + _table(headers, rows)


def _negotiation(uid: str) -> str:
    if str(uid) not in ROLES:
        return "None"
    scu, scp = ROLES[str(uid)]
    return (
        f"Role Selection: requestor as SCU {'accepted' if scu else 'refused'}, "
        f"as SCP {'accepted' if scp else 'refused'}"
    )


def _verification() -> list[str]:
    return _section(
        "### 3.5 SOP Specific Conformance",
        "#### 3.5.1 Verification",
        "C-ECHO is always answered with Success (0x0000) while the broker runs.",
    )


def _status_rows() -> list[tuple[str, str, str, str]]:
    return [(f"0x{int(s):04X}", STATUS_USE[s][0], s.name, STATUS_USE[s][1]) for s in DimseStatus]


def _mwl_statuses(settings: Settings) -> list[str]:
    cap = (
        f"at most {settings.worklist.max_results} items are returned per query "
        f"(`{_env_name('mwl_max_results')}`): when more match, the broker sends "
        f"{settings.worklist.max_results} Pending responses and then 0xA700 instead of Success, so "
        "the modality knows its list is incomplete; exactly that many matches end with Success"
        if settings.worklist.max_results
        else f"the number of matches is not limited (`{_env_name('mwl_max_results')}` is 0)"
    )
    lines = _section(
        "#### 3.5.2 Modality Worklist Information Model - FIND",
        "##### 3.5.2.1 Responses and Status Codes",
        "One C-FIND response with status Pending is sent per matching worklist item (one "
        "Scheduled Procedure Step), in order of the step's start date and time, followed by "
        f"one final response without identifier. Result cap: {cap}.",
    )
    lines += _table(("Status", "Meaning", "Name", "When the broker sends it"), _status_rows())
    return lines + _paragraphs(
        "C-CANCEL: the broker checks for a C-CANCEL-FIND-RQ before sending each further match; "
        "on one it stops and sends a single response with status 0xFE00 (Cancel). Matches "
        "already sent stand; a C-CANCEL after the final response has no effect."
    )


def _matching_type(keyword: str) -> str:
    return "R" if keyword in REQUIRED_MATCHING_KEYS else "O"


def _matching_rows() -> list[tuple[str, str, str, str, str]]:
    rows = []
    for keyword, matching in SUPPORTED_MATCHING_KEYS.items():
        tag = _keyword_tag(keyword)
        where = "SPS Sequence item" if keyword in SPS_LEVEL_KEYS else "top level"
        rows.append((keyword, _tag(tag), where, _matching_type(keyword), matching))
    return rows


def _matching_keys() -> list[str]:
    optional = ", ".join(k for k in SUPPORTED_MATCHING_KEYS if k not in REQUIRED_MATCHING_KEYS)
    lines = _section(
        "##### 3.5.2.2 Matching Keys",
        "The broker matches on every Required matching key of PS3.4 Table K.6-1 (R) and on "
        f"these optional ones (O): {optional}. Keys inside the Scheduled Procedure Step "
        f"Sequence {_tag(SPS_SEQUENCE_TAG)} are read from its single item (a query with more "
        "than one item is refused with 0xA900).",
    )
    lines += _table(("Keyword", "Tag", "Where", "K.6-1", "Matching types"), _matching_rows())
    return lines + _bullets(
        [
            "A zero-length key, or `*` alone, is universal matching.",
            "A non-empty key never matches an item whose value is empty or absent "
            "(PS3.4 K.2.2.1.1.1).",
            "Wild cards `*` (any run, including none) and `?` (one character) are honoured on "
            "the keys marked wild card. Text keys other than names are case-sensitive; leading "
            "and trailing spaces are not significant.",
            "Scheduled Station AE Title may hold several values on an item; the item matches "
            "when any value matches, and all values are returned.",
            "Study Instance UID accepts a list of UIDs separated by `\\`; any may match.",
            "A non-empty key the broker does not match on (any key not in this table, or a "
            "sequence other than the Scheduled Procedure Step Sequence with values) is ignored "
            "for matching and the Pending responses carry 0xFF01; elements that are no key of "
            "the model are ignored without a warning (3.5.2.5). Specific Character Set "
            "(0008,0005) and Timezone Offset From UTC (0008,0201) are never matched on.",
            "Fuzzy semantic matching of person names is not supported.",
        ]
    )


def _person_names(settings: Settings) -> list[str]:
    names = " and ".join(k for k in SUPPORTED_MATCHING_KEYS if BY_KEYWORD[k].vr == "PN")
    case = (
        "case-insensitive"
        if settings.worklist.name_case_insensitive
        else "case-sensitive (literal)"
    )
    return _section(
        "##### 3.5.2.3 Person Name Matching",
        f"Matching on {names} is {case} "
        f"(`{_env_name('mwl_name_case_insensitive')}` is "
        f"{_setting_value(settings.worklist.name_case_insensitive)}); all other keys are "
        "case-sensitive. Before comparison, key and stored name are normalised: spaces around "
        "components are dropped and trailing empty components and component groups are not "
        "significant, so `SMITH^JOHN^^^` equals `SMITH^JOHN`.",
        "A key without `=` is compared with each component group of the stored name "
        "(alphabetic, ideographic, phonetic) and matches when any group does. A key with `=` "
        "is compared group by group; an empty key group matches anything. The key is compared "
        "with a whole component group: `SMITH` does not match `SMITH^JOHN`, `SMITH*` does.",
    )


def _dates_and_times() -> list[str]:
    return _section(
        "##### 3.5.2.4 Date and Time Matching",
        "DA keys (Scheduled Procedure Step Start Date, Patient's Birth Date) take a single date "
        "`YYYYMMDD` or a range `D1-D2`, `D1-` or `-D2` (inclusive, open ends allowed). TM keys "
        "take `HH`, `HHMM` or `HHMMSS` (fractions are ignored; `HH:MM:SS` is accepted) as a "
        "single value or a range within one day; a single time matches by meaning (`1000` "
        "equals `100000`), and a range's missing parts are padded to the start or end of the "
        "period (`-10` ends at 10:59:59). A time range that crosses midnight, a range that ends "
        "before it starts or an invalid value is refused with 0xA900.",
        "Scheduled Procedure Step Start Date and Start Time together form one date-time range "
        "(PS3.4 C.2.2.2.5.4): date `20260705-20260707` with time `1000-1800` matches from "
        "5 July 10:00 to 7 July 18:00. A date without a time covers whole days; a time without "
        "a date applies on every day. Start times are stored to the second. Timezone Offset "
        "From UTC (0008,0201) in a request is ignored: dates and times are local to the broker's "
        "worklist.",
    )


def _return_rows() -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for attribute in MWL_ATTRIBUTES:
        prefix = ">" if attribute.level is Level.STEP else ""
        matched = "yes" if attribute.keyword in SUPPORTED_MATCHING_KEYS else ""
        rows.append(
            (
                f"{prefix}{_name(attribute.tag)}",
                attribute.keyword,
                _tag(attribute.tag),
                attribute.level.value,
                attribute.return_type,
                matched,
            )
        )
    return rows


def _type3(attributes: Iterable[MwlAttribute]) -> str:
    return ", ".join(a.keyword for a in attributes if a.return_type == "3")


_UNMATCHED = "universal only: a value is ignored for matching (0xFF01)"

# What a response holds for a requested key the item has no value for, by return type.
NO_VALUE_ANSWER = {
    "1": "never without a value (an item is refused without one, or one is generated)",
    "2": "zero length",
    "2C": "zero length when the item was given the element empty (the condition holds, value "
    "unknown); left out when the item does not have it",
    "1C": "left out (the condition does not hold for an item without a value)",
    "3": "left out",
}


def _broker_matching(row: ModelKey) -> str:
    if row.matching == "-":
        return "not a matching key (a return key only)"
    if row.tag is None:
        return _UNMATCHED
    if row.tag == SPS_SEQUENCE_TAG:
        return "sequence matching on the keys of its single item; universal"
    attribute = BY_TAG.get(row.tag)
    if attribute is not None and attribute.keyword in SUPPORTED_MATCHING_KEYS:
        return f"{SUPPORTED_MATCHING_KEYS[attribute.keyword]}; universal"
    if row.remark == "Universal Matching only":
        return "universal only (as PS3.4 requires); a value is ignored (0xFF01)"
    if row.name.endswith("Sequence"):
        return "universal only: a sequence with values in its item is ignored (0xFF01)"
    return _UNMATCHED


def _no_value_answer(row: ModelKey) -> str:
    if row.tag is None:
        return "returned as the item carries it; left out when the item does not have it"
    attribute = BY_TAG.get(row.tag)
    if attribute is None and row.tag != SPS_SEQUENCE_TAG:
        return "returned as the item carries it; left out when the item does not have it"
    if row.tag == SPS_SEQUENCE_TAG:
        return "always one item, the matched step"
    return NO_VALUE_ANSWER[row.return_type]


def _model_rows() -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for row in TABLE_K6_1:
        name = ">" * row.depth + row.name
        if row.remark and row.tag is not None:
            name += f" ({row.remark})"
        rows.append(
            (
                name,
                _tag(row.tag) if row.tag is not None else "",
                row.matching,
                _broker_matching(row),
                row.return_type,
                _no_value_answer(row),
            )
        )
    return rows


def _return_keys() -> list[str]:
    lines = _section(
        "##### 3.5.2.5 Return Keys",
        "Each response holds exactly the attributes of the request (PS3.4 K.4.1.1.3.2) that "
        "are answered by the rules below, plus Specific Character Set when needed. The "
        f"Scheduled Procedure Step Sequence {_tag(SPS_SEQUENCE_TAG)} is returned with exactly "
        "one item, the matched step (attributes marked `>` below live in that item).",
    )
    lines += _bullets(
        [
            "A requested key the item has a value for is returned with that value.",
            "A requested key the item has no value for is answered by its return key type "
            "(PS3.5 7.4, PS3.4 K.2.2.1.2): Type 1 always has a value; Type 2 is returned with "
            "zero length; Type 2C with zero length only when the item was given the element "
            "empty, else left out; Type 1C and Type 3 are left out (a Type 1C element may not "
            "be empty, and its condition does not hold for an item without a value).",
            f"Type 3 keys supported: {_type3(MWL_ATTRIBUTES)}; and any other attribute an item "
            "carries (items keep every attribute they were given): it is returned as the item "
            "carries it, and left out when the item does not have it.",
            "A sequence requested with zero length or with one empty item is universal: the "
            "whole stored sequence is returned (a Type 1C or 3 sequence the item lacks is left "
            "out, a Type 2 one is returned empty). A sequence requested with keys in its item "
            "returns each stored item reduced to those of the keys it carries.",
        ]
    )
    headers = ("Attribute", "Keyword", "Tag", "Level", "Return type", "Matching key")
    lines += _table(headers, _return_rows())
    lines += _paragraphs(
        "Every key of PS3.4 Table K.6-1, with its matching key type there (R required, "
        "O optional, - never a matching key), how the broker matches it, its return key type "
        "and what a response holds when the item has no value for it. Rows without a tag stand "
        "for the table's 'all other Attributes' of a module; keys of those the broker keeps in "
        "columns are listed by name.",
    )
    headers = ("Attribute (K.6-1)", "Tag", "K.6-1", "Broker matching", "Return type", "No value")
    lines += _table(headers, _model_rows())
    return lines + _ignored_elements()


def _ignored_elements() -> list[str]:
    return _paragraphs(
        "Elements that are no key of the worklist model are ignored for matching, left out of "
        "the response and do not refuse the query: Query/Retrieve Level (0008,0052) (the "
        "worklist model has no levels, PS3.4 K.6.1; dcmjs-dimse's default worklist query and "
        "some modalities send it), private elements (odd groups, whatever their private "
        "creator) and group lengths (gggg,0000). Pregnancy Status (0010,21C0) with the value 0, "
        "which is no Enumerated Value (some toolkits, dcmjs-dimse among them, send an empty US "
        "key as 0), is taken as universal matching.",
        "Status of the Pending responses (PS3.4 Table K.4-1): 0xFF01, 'one or more Optional "
        "Keys were not supported', only when the request holds a key with a value the broker "
        "does not match on, because the matches may then be more than the modality asked for. "
        "Requested return keys never cause 0xFF01: each is answered by the rules above (items "
        "keep every attribute they were given, so an absent one is absent from the item), and "
        "ignored elements are no Optional Keys of the model. DCMTK's wlmscpfs answers 0xFF01 "
        "for both; the broker does not, because some SCUs end the query at the first status "
        "that is not 0xFF00 (dcmjs-dimse 0.3.3 releases the association there and loses the "
        "remaining matches).",
    )


def _sps_status() -> list[str]:
    statuses = ", ".join(s.value for s in SpsStatus)
    return _section(
        "##### 3.5.2.6 Scheduled Procedure Step Status",
        f"Steps in a final status ({_final_statuses()}) are not returned unless the query "
        "names a Scheduled Procedure Step Status (0040,0020) other than universal matching "
        "(a value or a wild card pattern). A status key must be one of the Defined Terms "
        f"{statuses} or a wild card pattern, else the query is refused with 0xA900.",
    )


def _charset_terms() -> tuple[list[str], list[str]]:
    known = set(python_encoding)
    single = [t for t in SINGLE_CODE_TERMS if t in known]
    extensions = [t for t in EXTENSION_TERMS if t in known]
    return single, extensions


def _charset_behaviour() -> list[str]:
    return _section(
        "##### 3.5.2.7 Specific Character Set",
        "The request is decoded according to its Specific Character Set (0008,0005) and "
        "matched as Unicode text. A response whose values are all ASCII carries no Specific "
        "Character Set. Otherwise the broker answers in the request's character set when every "
        f"value of the response can be encoded in it, else in UTF-8 (`{UTF8}`). The broker "
        "stores text as Unicode; see section 7 for the character sets supported.",
    )


_DEFAULT_POLICY_EFFECT: dict[PolicyKind, str] = {
    PolicyKind.NONE: "a calling AE without a policy of its own gets every matching item "
    "(the query as sent)",
    PolicyKind.CALLING_AE: "a calling AE without a policy of its own that sends no Scheduled "
    "Station AE Title gets only the items scheduled on its own AE title",
    PolicyKind.RESTRICT: "a calling AE without a policy of its own gets only the items "
    "scheduled on its own AE title, whatever station it asks for",
}


def _worklist_policies(settings: Settings) -> list[str]:
    default = settings.worklist.default_policy
    lines = _section(
        "##### 3.5.2.8 Worklist Policies per Calling AE",
        "Modalities often send no Scheduled Station AE Title (0040,0001) (PS3.2 advises a "
        "user-initiated query not to include it) and would then get every station's "
        "worklist. The broker therefore keeps a worklist policy per Calling AE Title "
        "(REST `/api/worklist-policies`; the title is compared exactly, leading and trailing "
        "spaces not significant) that changes the query before it is matched:",
    )
    lines += _bullets(
        [
            "`none`: the query is matched as sent.",
            "`calling_ae`: a query whose Scheduled Station AE Title is absent, zero length or "
            "`*` is matched as if it held the Calling AE Title (exactly, wild card characters "
            "in the title included). A query that names a station (a value or a wild card "
            "pattern) is matched as sent.",
            "`restrict`: whatever the query asks, only items scheduled on one of the policy's "
            "station AE titles and/or with one of its modalities are returned; a policy with "
            "neither list restricts the AE to its own AE title as station. The query's own "
            "Scheduled Station AE Title key must match one of the allowed station values of "
            "the item, so a query for another station or modality gets no matches (Success "
            "without Pending responses).",
        ]
    )
    return lines + _paragraphs(
        f"Calling AEs without a policy of their own get `{_env_name('mwl_default_policy')}` "
        f"(here `{default.value}`): {_DEFAULT_POLICY_EFFECT[default]}. The returned attributes "
        "are not changed by a policy: a response carries exactly the requested keys, and "
        "Scheduled Station AE Title holds the item's stored value(s).",
    )


MPPS_STATUS_USE: dict[NStatus, str] = {
    NStatus.SUCCESS: "N-CREATE, N-SET or N-GET done",
    NStatus.INVALID_ATTRIBUTE_VALUE: "N-CREATE with a status other than IN PROGRESS or an "
    "unknown status; N-SET of an attribute N-SET may not carry (Table F.7.2-1 'Not allowed')",
    NStatus.PROCESSING_FAILURE: "N-SET after COMPLETED or DISCONTINUED (Error ID 0xA710, "
    "comment 'Performed Procedure Step Object may no longer be updated'); a data set that "
    "cannot be decoded whole (an element running past its end; checked before any of it is "
    "used); internal failure",
    NStatus.DUPLICATE_SOP_INSTANCE: "N-CREATE with an SOP Instance UID that exists",
    NStatus.NO_SUCH_SOP_INSTANCE: "N-SET or N-GET of an unknown SOP Instance UID",
    NStatus.MISSING_ATTRIBUTE: "N-CREATE without a Type 1 attribute (or without Affected SOP "
    "Instance UID)",
    NStatus.MISSING_ATTRIBUTE_VALUE: "a Type 1 attribute empty at N-CREATE; COMPLETED or "
    "DISCONTINUED without Performed Procedure Step End Date and Time",
}


def _mpps(settings: Settings) -> list[str]:
    lines = _section(
        "#### 3.5.3 Modality Performed Procedure Step",
        "N-CREATE and N-SET (Modality Performed Procedure Step) and N-GET (MPPS Retrieve) are "
        "supported. The broker validates each request per PS3.4 F.7.2: N-CREATE must carry "
        "the SOP Instance UID, status IN PROGRESS and every Type 1 attribute of Table F.7.2-1 "
        "(Scheduled Step Attributes Sequence with a Study Instance UID in each item, "
        "Performed Procedure Step ID, Performed Station AE Title, start date and time, "
        "Modality); Type 2 attributes are accepted when absent. N-SET is accepted only while "
        "the MPPS is IN PROGRESS, may not carry attributes marked 'Not allowed' for N-SET, "
        "replaces sequences whole, and a final status needs the end date and time. The whole "
        "data set is stored and kept current; it is kept indefinitely. No attribute is coerced.",
        "##### 3.5.3.1 Status Codes",
    )
    rows = [(f"0x{int(s):04X}", s.name, use) for s, use in MPPS_STATUS_USE.items()]
    lines += _table(("Status", "Name", "When the broker sends it"), rows)
    lines += _paragraphs(
        "The attribute at fault is named in Attribute Identifier List (0000,1005) of an N-SET "
        "response and in the Error Comment (0000,0902) of an N-CREATE response (which has no "
        "Attribute Identifier List)."
    )
    lines += _section(
        "##### 3.5.3.2 Linking to the Worklist",
        "Each item of the Scheduled Step Attributes Sequence (0040,0270) names scheduled "
        "steps by Accession Number, Requested Procedure ID and Scheduled Procedure Step ID, or "
        "by Study Instance UID and SPS ID. One MPPS may perform several steps (grouped case). "
        "An MPPS whose items name no step (unscheduled case: only a Study Instance UID) is kept "
        "unlinked, listed by the REST API (`GET /api/mpps?unlinked=true`) and can be linked "
        "later (`POST /api/mpps/{uid}/link`).",
        "##### 3.5.3.3 Effect on the Worklist",
    )
    lines += _table(
        ("MPPS status", "Scheduled steps become", "Offered by the worklist"),
        [
            ("IN PROGRESS", "STARTED", "yes"),
            ("COMPLETED", "COMPLETED", "no (final)"),
            ("DISCONTINUED", "DISCONTINUED", "no (final)"),
        ],
    )
    ris = settings.outbox.ris_hl7_endpoint or "not configured"
    forward = ", ".join(settings.outbox.mpps_forward) or "none configured"
    return lines + _section(
        "##### 3.5.3.4 Status to the RIS",
        "Every MPPS status change is reported to the RIS over HL7 v2 "
        f"(`{_env_name('ris_hl7_endpoint')}`: {ris}; message type "
        f"`{_env_name('ris_hl7_message')}`: {settings.outbox.ris_hl7_message}), "
        "through a durable outbox written in the same transaction, delivered in order per "
        "order with retry and back-off.",
        "##### 3.5.3.5 Forwarding",
        "Each N-CREATE and N-SET is forwarded, through the same outbox, to the downstream MPPS "
        f"SCPs of `{_env_name('mpps_forward')}` ({forward}), as {settings.dicom.ae_title}, "
        "proposing the Modality Performed Procedure Step SOP Class with the transfer syntaxes "
        "above. A destination whose AE Title is a known remote AE (table `remote_ae`, service "
        "`mpps`) marked `tls` is reached over TLS (section 8), presenting the broker's "
        "certificate and checking the peer's against `BROKER_TLS_CA`.",
    )


ACTION_STATUS_USE: dict[NStatus, str] = {
    NStatus.SUCCESS: "the request was recorded and will be processed (it says nothing yet "
    "about the instances, PS3.4 J.3.2.1.3)",
    NStatus.INVALID_ARGUMENT_VALUE: "Action Information without a Transaction UID, or with an "
    "invalid one; Referenced SOP Sequence missing or empty, an item without Referenced SOP "
    "Class or Instance UID, or an instance referenced twice (J.3.2.1.1.3)",
    NStatus.NO_SUCH_ACTION: f"Action Type ID other than {REQUEST_STORAGE_COMMITMENT}",
    NStatus.NO_SUCH_SOP_INSTANCE: "Requested SOP Instance UID other than the well-known "
    f"{WELL_KNOWN_INSTANCE_UID}",
    NStatus.PROCESSING_FAILURE: "a Transaction UID already used for a different request "
    "(a repeat of the same request is answered Success and not processed twice); Action "
    "Information that cannot be decoded; internal failure",
}

FAILURE_REASON_USE: dict[FailureReason, str] = {
    FailureReason.NO_SUCH_OBJECT_INSTANCE: "the broker has not stored the instance",
    FailureReason.CLASS_INSTANCE_CONFLICT: "the instance is stored under another SOP Class "
    "than the request names",
    FailureReason.PROCESSING_FAILURE: "the instance is stored but its file is missing, "
    "unreadable or not of the stored size",
}

STATE_USE: dict[CommitmentState, str] = {
    CommitmentState.PENDING: "recorded; the instances are being checked",
    CommitmentState.CHECKED: "checked; the report waits in the outbox for a new association",
    CommitmentState.REPORTED: "the requester answered the N-EVENT-REPORT with Success",
    CommitmentState.UNDELIVERABLE: "checked, but the requester closed its association and is "
    "no remote AE with service `commit`: the result is kept, not reported",
}


def _storage_commitment(settings: Settings) -> list[str]:
    ae = settings.dicom.ae_title
    delay = settings.dicom.stgcmt_report_delay
    lines = _section(
        "#### 3.5.5 Storage Commitment Push Model",
        "The broker is the SCP of the Storage Commitment Push Model SOP Class (PS3.4 J.3). It "
        "accepts N-ACTION Request Storage Commitment (Action Type ID "
        f"{REQUEST_STORAGE_COMMITMENT}) on the well-known SOP Instance "
        f"{WELL_KNOWN_INSTANCE_UID}; the Action Information must carry a Transaction UID "
        "(0008,1195) and a Referenced SOP Sequence (0008,1199) with a "
        "Referenced SOP Class UID and Instance UID in every item, each instance once. Storage "
        "Media File-Set ID and UID are ignored. The request is recorded and answered at once; "
        "the instances are checked afterwards.",
        "##### 3.5.5.1 N-ACTION Status Codes",
    )
    rows = [(f"0x{int(s):04X}", s.name, use) for s, use in ACTION_STATUS_USE.items()]
    lines += _table(("Status", "Name", "When the broker sends it"), rows)
    lines += _section(
        "##### 3.5.5.2 Commitment",
        "An instance is committed when the broker stored it (Storage SCP), under the SOP Class "
        "the request names, and its file reads back whole (it exists, is readable and has the "
        "size stored when it was received). Stored instances are kept as received (Level 2, "
        "all attributes including private ones) and are not deleted by the broker. Every "
        "requested instance appears in exactly one of the Referenced SOP Sequence (committed) "
        "or the Failed SOP Sequence (0008,1198), the latter with a Failure Reason (0008,1197):",
    )
    lines += _table(
        ("Failure Reason", "Name", "When"),
        [(f"0x{int(r):04X}", r.name, use) for r, use in FAILURE_REASON_USE.items()],
    )
    lines += _paragraphs(
        f"The N-EVENT-REPORT has Event Type ID {int(EventType.ALL_COMMITTED)} when every "
        f"instance is committed and {int(EventType.FAILURES_EXIST)} when any failed "
        f"(Table J.3-2); it carries the Transaction UID and Retrieve AE Title (0008,0054) "
        f"`{ae}`, on the well-known SOP Instance."
    )
    syntaxes = "<br>".join(_transfer_syntax(uid) for uid in REPORT_TRANSFER_SYNTAXES)
    lines += _section(
        "##### 3.5.5.3 Same or New Association",
        "The report is sent on the requester's association when that association is still "
        f"open {delay:g} s after the N-ACTION response (`{_env_name('stgcmt_report_delay')}`), "
        "and always after the N-ACTION response. When the requester released it by then, or "
        "did not answer the report there with Success, the report goes on a new association: "
        f"`{ae}` requests an association to the requester's AE title at the host and port of "
        "its remote AE entry (table `remote_ae`, service `commit`), proposing this "
        "presentation context with SCP/SCU Role Selection (PS3.4 J.3.3.1.3, PS3.7 D.3.3.4):",
    )
    lines += _table(
        ("Abstract Syntax", "Transfer Syntaxes", "Role", "Extended Negotiation"),
        [
            (
                "Storage Commitment Push Model<br>1.2.840.10008.1.20.1",
                syntaxes,
                "SCP",
                "Role Selection: SCU role 0, SCP role 1",
            )
        ],
    )
    lines += _paragraphs(
        "Only a Success (0x0000) response counts as delivered. Otherwise (the requester is "
        "down, refuses the association, or answers another status) the report stays in the "
        "durable outbox and is tried again with back-off from "
        f"{settings.outbox.retry_min:g} s doubling up to {settings.outbox.retry_max:g} s "
        f"(`{_env_name('outbox_retry_min')}`, `{_env_name('outbox_retry_max')}`), without "
        "limit, surviving restarts. A requester that is no remote AE with service `commit` "
        "gets no report unless it keeps its association open (its result is kept as "
        "`undeliverable`; `POST /api/storage-commitments/{uid}/report` queues it once the AE "
        "is added). TLS is not used for the new "
        "association (a remote AE marked TLS is not sent to; see section 8).",
        "A request the broker had recorded but not yet reported when it stopped is checked "
        "again after the restart and reported on a new association.",
        "##### 3.5.5.4 Results Kept",
        "Requests and results are kept indefinitely (no purge): `GET /api/storage-commitments` "
        "lists them (filter by requester AE and state) and `GET /api/storage-commitments/{uid}` "
        "shows the committed and failed instances with their reasons and the delivery of the "
        "report (attempts, last error). States:",
    )
    return lines + _table(("State", "Meaning"), [(s.value, use) for s, use in STATE_USE.items()])


def _communication(settings: Settings) -> list[str]:
    tls = (
        f"A second port for DICOM over TLS is available (`{_env_name('dicom_tls_port')}`, off "
        "here); see section 8."
        if settings.dicom.tls_port is None
        else "The TLS port serves the same AE Title, SOP Classes and policies as the plain one."
    )
    return _section(
        "## 4. Communication Profiles",
        "DICOM Upper Layer over TCP/IP (PS3.8). The broker listens on "
        f"`{settings.dicom.bind_host}` {_ports(settings)}. {tls} Physical media are not "
        "supported.",
    )


def _extensions() -> list[str]:
    return _section(
        "## 5. Extensions, Specializations, Privatizations",
        "None. No private attributes or SOP classes are used.",
    )


def _configuration(settings: Settings) -> list[str]:
    lines = _section(
        "## 6. Configuration",
        "The DICOM behaviour is configured with environment variables (or a `.env` file in the "
        "working directory). This statement was generated with these values:",
    )
    rows = []
    for field in DICOM_SETTINGS:
        section, name = ENV.get(field, ("dicom", field))
        assert section is not None
        part = getattr(settings, section)
        info = type(part).model_fields[name]
        default = info.get_default(call_default_factory=True)
        value = getattr(part, name)
        rows.append(
            (
                f"`{_env_name(field)}`",
                _setting_value(value),
                _setting_value(default),
                info.description or "",
            )
        )
    return lines + _table(("Variable", "Value", "Default", "Meaning"), rows)


def _character_sets() -> list[str]:
    single, extensions = _charset_terms()
    lines = _section(
        "## 7. Support of Character Sets",
        "The default repertoire (ISO-IR 6, no Specific Character Set) and these Defined Terms "
        "of Specific Character Set (0008,0005) are supported in requests and responses:",
    )
    lines += _bullets(
        [
            "Without code extensions: " + ", ".join(f"`{t}`" for t in single),
            "With code extensions (ISO 2022): " + ", ".join(f"`{t}`" for t in extensions),
        ]
    )
    return lines + _paragraphs(
        f"Responses that need characters outside the request's character set use `{UTF8}`."
    )


def _security(settings: Settings) -> list[str]:
    client = {
        ClientCertificates.NONE: "not asked for",
        ClientCertificates.OPTIONAL: "checked against the configured CA when the peer sends one",
        ClientCertificates.REQUIRED: "required and checked against the configured CA; a peer "
        "without a valid one is refused during the handshake",
    }[settings.tls.client_cert]
    state = (
        f"off in this configuration (`{_env_name('dicom_tls_port')}`)"
        if settings.dicom.tls_port is None
        else f"on, TCP port {settings.dicom.tls_port}"
    )
    lines = _section(
        "## 8. Security",
        "### 8.1 Security Profiles",
        f"Secure Transport Connection: the {PROFILE}, {state}. The same profile is used when "
        "the broker connects to peers over TLS (section 3.5.3.5). TLS 1.2 and TLS 1.3 only; "
        "TLS 1.1 and older, SSL, compression and renegotiation are refused. TLS 1.3 uses "
        "OpenSSL's TLS 1.3 suites (all AEAD); TLS 1.2 is limited to these suites (forward "
        "secrecy and AEAD only, the four the profile names first):",
    )
    lines += _bullets(f"`{cipher}`" for cipher in TLS12_CIPHERS.split(":"))
    lines += _paragraphs(
        "The broker presents the certificate of `BROKER_TLS_CERT`. Client certificates "
        f"(`{_env_name('tls_client_cert')}` = {settings.tls.client_cert.value}): {client}. "
        "A failed handshake closes the TCP connection before any association is negotiated; "
        "it is logged and other associations are not affected.",
        "### 8.2 Other security",
        "No User Identity Negotiation and no digital signatures. Access is limited by the AE "
        "Title checks of section 3.4, by TLS client certificates when configured, and by the "
        "network.",
    )
    return lines


def render(settings: Settings) -> str:
    """The conformance statement for ``settings``, as Markdown."""
    parts: list[list[str]] = [
        _header(settings),
        _overview(),
        _implementation_model(settings),
        _ae_specification(settings),
        _association_policies(settings),
        _acceptance_policy(settings),
        _verification(),
        _mwl_statuses(settings),
        _matching_keys(),
        _person_names(settings),
        _dates_and_times(),
        _return_keys(),
        _sps_status(),
        _charset_behaviour(),
        _worklist_policies(settings),
        _mpps(settings),
        qr_section(settings),
        _storage_commitment(settings),
        conformance_storage.storage_section(settings),
        _communication(settings),
        _extensions(),
        _configuration(settings),
        _character_sets(),
        _security(settings),
    ]
    lines = [line for part in parts for line in part]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"
