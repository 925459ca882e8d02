"""One inbound HL7 message: decode, map, apply, log, acknowledge (original mode).

The order of things is what makes intake safe:

1. A message that cannot be decoded or routed is answered AR (and logged).
2. A redelivered message (same MSH-3, MSH-4, MSH-10 as an accepted one, and the same content
   by :func:`hl7_ingest.parse.canonical`) gets the ACK it got the first time, and changes
   nothing. A *different* message reusing an accepted MSH-10 is answered AE 205 (duplicate key
   identifier) at ``MSH^1^10`` and changes nothing: never a silent AA.
3. The change and the log row holding the AA are written in one transaction
   (:func:`app.services.hl7_accept.accept`); the AA is sent only after that commit. If the
   commit fails, nothing was applied and the sender gets no AA, so an ACKed message is never
   missing after a restart.
4. A message that is understood but cannot be applied gets AE with an ERR naming the field.
5. While the database cannot be reached nothing is applied and the answer is never AA nor AR:
   by ``BROKER_HL7_DB_DOWN`` the connection is closed without an answer (``close``: the sender
   resends) or the message is answered AE 207 (``ae``).
6. A sender outside ``BROKER_HL7_ALLOWED_SENDERS`` (when set) is answered AR; nothing applied.
7. MSH-3, MSH-4 or MSH-10 longer than the log's key columns is answered AR 104 (it could not be
   logged whole, so its redelivery could not be recognised); a NUL character anywhere is AE 102
   (:func:`hl7_ingest.parse.decode_text`). PostgreSQL refuses both; SQLite would store them.

The log keeps the raw message and the ACK sent. At INFO only control IDs and outcomes are logged:
messages carry patient data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app import log_context, metrics
from app.config import Hl7Settings
from app.db import SessionFactory
from app.domain.actor import Actor
from app.domain.errors import DomainError
from app.domain.status import AuditSource
from app.group_commit import GroupCommit
from app.services import hl7_accept, hl7_log, intake
from hl7_ingest import ack, parse, router
from hl7_ingest.errors import (
    APPLICATION_INTERNAL_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    VALUE_TOO_LONG,
    AckCode,
    FieldWarning,
    Hl7Error,
    MessageError,
    MessageRejected,
    ack_code,
)
from hl7_ingest.server import CloseConnection, current_peer

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Outcome:
    code: AckCode
    ack_text: str
    error: str = ""


class Hl7Handler:
    """``handle(raw) -> ack bytes`` for the MLLP server; ``reject(reason)`` for bad frames."""

    def __init__(self, settings: Hl7Settings, session_factory: SessionFactory) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.commits = GroupCommit(session_factory)  # shared by every connection's messages
        self.allowed_senders = settings.sender_allow_list
        self.policy = intake.IntakePolicy(
            order_control=settings.order_control,
            generate_missing_study_uid=settings.missing_study_uid == "generate",
            accept_missing_accession=settings.missing_accession == "accept",
            start_missing_now=settings.missing_start == "now",
        )

    # -- entry points ---------------------------------------------------------------------

    def handle(self, raw: bytes) -> bytes:
        """Always returns an ACK; an unexpected failure is logged and answered AE/AR.

        Every log line of the message carries its MSH-10 (``app.log_context``) once read.
        """
        with log_context.scope():
            try:
                codec, outcome = self._handle(raw)
                code, ack_text = outcome.code, outcome.ack_text
            except hl7_accept.DatabaseUnavailable as exc:
                codec, code, ack_text = "ascii", AckCode.AE, self._database_down(raw, exc)
            except Exception:
                LOG.exception("HL7 message could not be processed")
                text = "internal error; see the broker log"
                error = MessageRejected(APPLICATION_INTERNAL_ERROR, text, "")
                codec, code = "ascii", AckCode.AR
                ack_text = ack.build_ack(None, AckCode.AR, settings=self.settings, error=error)
        metrics.HL7_MESSAGES.labels(code.value).inc()
        return ack_text.encode(codec, errors="replace")

    def _database_down(self, raw: bytes, exc: Exception) -> str:
        """Nothing was applied: close without an answer (``CloseConnection``) or AE 207."""
        env = _envelope_or_none(raw)
        control_id = env.control_id if env else "?"
        if env is not None:
            log_context.bind(msh10=env.control_id)
        if self.settings.db_down == "close":
            metrics.HL7_MESSAGES.labels(metrics.HL7_NO_ACK).inc()
            LOG.warning(
                "HL7 %s from %s: %s; closing without an ACK so that the sender resends",
                control_id,
                current_peer() or "?",
                exc,
            )
            raise CloseConnection(str(exc)) from exc
        LOG.warning("HL7 %s from %s: %s; answered AE 207", control_id, current_peer() or "?", exc)
        error = MessageError(APPLICATION_INTERNAL_ERROR, "database unavailable, resend", "")
        return ack.build_ack(env, AckCode.AE, settings=self.settings, error=error)

    def reject(self, reason: str) -> bytes:
        """The AR for a frame the transport could not deliver (oversized)."""
        error = MessageRejected(APPLICATION_INTERNAL_ERROR, reason, "")
        LOG.warning("HL7 frame rejected: %s", reason)
        metrics.HL7_MESSAGES.labels(AckCode.AR.value).inc()
        return ack.build_ack(None, AckCode.AR, settings=self.settings, error=error).encode(
            "ascii", errors="replace"
        )

    # -- steps ----------------------------------------------------------------------------

    def _handle(self, raw: bytes) -> tuple[str, _Outcome]:
        """The ACK's codec (the message's MSH-18, which the ACK echoes) and the outcome."""
        try:
            decoded = parse.decode_text(raw)
            env = parse.envelope(decoded.text)
        except MessageRejected as exc:
            return "ascii", self._unreadable(raw.decode("latin-1"), exc)
        except MessageError as exc:  # text valid neither in MSH-18's set nor as UTF-8
            return self._undecodable(raw, exc)
        log_context.bind(msh10=env.control_id)
        text = decoded.text
        if decoded.utf8_instead_of is not None:
            LOG.warning(
                "HL7 %s %s: MSH-18 says '%s' but the text is UTF-8; read as UTF-8",
                _type(env),
                env.control_id,
                decoded.utf8_instead_of or "(none: ASCII)",
            )
        codec = parse.charset_codec(env.charset)  # decode() already accepted this charset
        overlong = _overlong_key(env)
        if overlong is not None:
            return codec, self._fail(env, text, AckCode.AR, overlong)
        if not self._sender_allowed(env):
            error = MessageRejected(
                APPLICATION_INTERNAL_ERROR,
                f"sending application {env.sending_application}^{env.sending_facility} is not "
                "allowed (BROKER_HL7_ALLOWED_SENDERS)",
                "MSH^1^3",
            )
            return codec, self._fail(env, text, AckCode.AR, error)
        return codec, self._process(text, env)

    def _sender_allowed(self, env: parse.Envelope) -> bool:
        allowed = self.allowed_senders
        if not allowed:
            return True
        app, facility = env.sending_application, env.sending_facility
        return (app, None) in allowed or (app, facility) in allowed

    def _redelivered(self, env: parse.Envelope, text: str, ack_text: str, raw: str) -> _Outcome:
        """The same ACK for the same message; AE 205 for another one reusing its MSH-10."""
        if parse.canonical(raw) == parse.canonical(text):
            LOG.info("HL7 %s %s redelivered: same ACK, no change", _type(env), env.control_id)
            return _Outcome(AckCode.AA, ack_text)
        error = MessageError(
            DUPLICATE_KEY_IDENTIFIER,
            f"message control id {env.control_id} was already used by another message from "
            f"{env.sending_application}^{env.sending_facility}; not applied",
            "MSH^1^10",
        )
        return self._fail(env, text, AckCode.AE, error)

    def _unreadable(self, text: str, exc: MessageRejected) -> _Outcome:
        outcome = self._answer(None, AckCode.AR, exc)
        LOG.info(
            "HL7 message from %s answered AR: %d %s (%s)",
            current_peer() or "?",
            exc.code,
            exc.location,
            exc.text,
        )
        self._log_failure(None, text, outcome)
        return outcome

    def _undecodable(self, raw: bytes, error: MessageError) -> tuple[str, _Outcome]:
        """AE for a message whose text cannot be decoded: its MSH (ASCII) is still read, so the
        ACK names the message (MSA-2); the log keeps the bytes as Latin-1, nothing is applied."""
        latin = parse.normalize_segments(raw.decode("latin-1"))
        try:
            env = parse.envelope(latin)
        except MessageRejected as exc:
            return "ascii", self._unreadable(latin, exc)
        log_context.bind(msh10=env.control_id)
        return "ascii", self._fail(env, latin, AckCode.AE, error)

    def _previous(self, env: parse.Envelope) -> hl7_accept.EarlierMessage | None:
        return hl7_accept.earlier_message(
            self.session_factory,
            sending_application=env.sending_application,
            sending_facility=env.sending_facility,
            control_id=env.control_id,
        )

    def _process(self, text: str, env: parse.Envelope) -> _Outcome:
        try:
            decoded = router.decode_message(text, env)
        except Hl7Error as exc:
            # a message accepted before (under other settings) keeps its ACK when resent
            previous = self._previous(env)
            if previous is not None:
                return self._redelivered(env, text, previous.ack, previous.raw)
            return self._fail(env, text, ack_code(exc), exc)
        accepted = self._answer(env, AckCode.AA, None, decoded.warnings)
        try:
            result = hl7_accept.accept(
                self.commits,
                command=decoded.command,
                policy=self.policy,
                actor=_actor(env),
                message=self._record(env, text, accepted),
            )
        except DomainError as exc:
            error = ack.error_for_domain(exc, env)
            return self._fail(env, text, ack_code(error), error)
        if isinstance(result, hl7_accept.AlreadyAccepted):
            # A message with this MSH-10 committed on another connection meanwhile.
            return self._redelivered(env, text, result.ack, result.raw)
        LOG.info(
            "HL7 %s %s accepted%s",
            _type(env),
            env.control_id,
            f" with {len(decoded.warnings)} warning(s): "
            + ", ".join(f"{w.code} {w.location}" for w in decoded.warnings)
            if decoded.warnings
            else "",
        )
        return accepted

    def _fail(self, env: parse.Envelope, text: str, code: AckCode, error: Hl7Error) -> _Outcome:
        outcome = self._answer(env, code, error)
        LOG.info(
            "HL7 %s %s from %s answered %s: %d %s",
            _type(env),
            env.control_id,
            current_peer() or "?",
            code.value,
            error.code,
            error.location,
        )
        self._log_failure(env, text, outcome)
        return outcome

    def _answer(
        self,
        env: parse.Envelope | None,
        code: AckCode,
        error: Hl7Error | None,
        warnings: tuple[FieldWarning, ...] = (),
    ) -> _Outcome:
        text = ack.build_ack(env, code, settings=self.settings, error=error, warnings=warnings)
        if error:
            reason = f"{error.code} {error.location} {error.text}".strip()
        else:  # an accepted message's warnings are kept in the log's error column too
            reason = "; ".join(f"W {w.code} {w.location} {w.text}" for w in warnings)
        return _Outcome(code, text, reason)

    def _record(
        self, env: parse.Envelope | None, text: str, outcome: _Outcome
    ) -> hl7_log.MessageRecord:
        return hl7_log.MessageRecord(
            sending_application=env.sending_application if env else "",
            sending_facility=env.sending_facility if env else "",
            control_id=env.control_id if env else "",
            message_type=_type(env) if env else "",
            outcome=outcome.code.value,
            raw=text,
            ack=outcome.ack_text,
            error=outcome.error,
        )

    def _log_failure(self, env: parse.Envelope | None, text: str, outcome: _Outcome) -> None:
        record = self._record(env, text, outcome)
        try:
            hl7_accept.record_refused(self.session_factory, message=record)
        except hl7_accept.DatabaseUnavailable as exc:
            LOG.warning("HL7 message log write failed: %s", exc)
        except Exception:  # the peer still gets its answer when the log is unavailable
            LOG.exception("HL7 message log write failed")


# The message log's key: MSH-3, MSH-4 and MSH-10 (Envelope attribute, field, name).
_LOG_KEY = (
    ("sending_application", 3, "sending application"),
    ("sending_facility", 4, "sending facility"),
    ("control_id", 10, "message control id"),
)


def _overlong_key(env: parse.Envelope) -> MessageRejected | None:
    """AR 104 when MSH-3, MSH-4 or MSH-10 is longer than the message log can keep: cut short,
    two messages could share a key, and the key is what makes redelivery exactly-once."""
    for name, field, label in _LOG_KEY:
        limit = hl7_log.KEY_LENGTHS[name]
        if len(getattr(env, name)) > limit:
            return MessageRejected(
                VALUE_TOO_LONG,
                f"{label} (MSH-{field}) is longer than {limit} characters",
                f"MSH^1^{field}",
            )
    return None


def _envelope_or_none(raw: bytes) -> parse.Envelope | None:
    try:
        return parse.envelope(parse.normalize_segments(raw.decode("latin-1")))
    except Exception:
        return None


def _type(env: parse.Envelope) -> str:
    return f"{env.message_type}^{env.trigger_event}" if env.trigger_event else env.message_type


def _actor(env: parse.Envelope) -> Actor:
    """The audit trail's actor: the sending application, with MSH-10 as the context."""
    return Actor(AuditSource.HL7, env.sending_application, context=env.control_id)
