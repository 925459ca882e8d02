"""Worklist policies per calling AE: what a modality's C-FIND may see.

Many modalities send no Scheduled Station AE Title (PS3.2 advises a user-initiated query not to
include it) and would then be offered every station's worklist. A policy, chosen per calling AE
title (or the default for AEs without one), turns a query into the query the broker runs:

- ``none``: the query as sent (the behaviour without policies).
- ``calling_ae``: a query without a Scheduled Station AE Title key (absent, empty or ``*``)
  gets the calling AE title as that key; a query that names a station keeps it.
- ``restrict``: whatever the query asks, items must be scheduled on one of the policy's
  station AE titles and/or be of one of its modalities; with neither configured the station is
  the calling AE title itself. A query for another station or modality gets no matches.

Pure code: the service looks the policy up; ``apply_policy`` is the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from app.domain.matching import TextKey
from app.domain.worklist import WorklistQuery


class PolicyKind(StrEnum):
    NONE = "none"
    CALLING_AE = "calling_ae"
    RESTRICT = "restrict"


@dataclass(frozen=True)
class WorklistPolicy:
    """The policy of one calling AE; lists are used by ``restrict`` only."""

    kind: PolicyKind = PolicyKind.NONE
    station_ae_titles: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()

    def allowed_stations(self, calling_ae: str) -> tuple[str, ...] | None:
        """The stations a ``restrict`` policy confines to; ``None`` when it does not."""
        if self.kind is not PolicyKind.RESTRICT:
            return None
        if self.station_ae_titles:
            return self.station_ae_titles
        if self.modalities:
            return None  # restricted by modality only
        return (calling_ae.strip(),) if calling_ae.strip() else None

    def allowed_modalities(self) -> tuple[str, ...] | None:
        if self.kind is not PolicyKind.RESTRICT or not self.modalities:
            return None
        return self.modalities

    def describe(self, calling_ae: str) -> str:
        """A short text for logs and the conformance statement (no patient data)."""
        if self.kind is PolicyKind.NONE:
            return "none"
        if self.kind is PolicyKind.CALLING_AE:
            return f"calling_ae (station {calling_ae.strip() or '-'} when the query names none)"
        stations = self.allowed_stations(calling_ae)
        modalities = self.allowed_modalities()
        return (
            f"restrict (stations {','.join(stations) if stations else 'any'}; "
            f"modalities {','.join(modalities) if modalities else 'any'})"
        )


NO_POLICY = WorklistPolicy()


def literal_key(value: str) -> TextKey:
    """A Single Value key that matches ``value`` exactly, even if it holds ``*`` or ``?``.

    An AE title may contain the wild card characters (PS3.5 6.2 allows them in AE); a title the
    broker puts into a query must still mean just that title.
    """
    value = value.strip()
    return TextKey(value, value.__eq__)


def apply_policy(query: WorklistQuery, policy: WorklistPolicy, calling_ae: str) -> WorklistQuery:
    """The query the broker runs for ``calling_ae`` under ``policy``."""
    if policy.kind is PolicyKind.CALLING_AE:
        if query.station_ae_title is not None or not calling_ae.strip():
            return query
        return replace(query, station_ae_title=literal_key(calling_ae))
    if policy.kind is PolicyKind.RESTRICT:
        return replace(
            query,
            allowed_stations=_narrow(query.allowed_stations, policy.allowed_stations(calling_ae)),
            allowed_modalities=_narrow(query.allowed_modalities, policy.allowed_modalities()),
        )
    return query


def _narrow(
    current: tuple[str, ...] | None, allowed: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    """Both limits hold: the values in both (a limit of ``None`` allows everything)."""
    if allowed is None:
        return current
    if current is None:
        return allowed
    return tuple(v for v in current if v in allowed)
