"""Events: everything the core hears about. Plain data, no behaviour.

Connector ids start at 1; connector 0 means the charge point as a whole: OCPP 1.6 connectorId 0,
OCPP 2.0.1 the station (evseId 0; each EVSE has one connector, EVSE n is connector n).

``id_tag`` is the identifier presented (a card's UID, an app user's token): OCPP 1.6 idTag,
OCPP 2.0.1 idToken.idToken, whose type (ISO14443, Central, ...) the 2.0.1 adapter keeps;
``parent_id_tag`` is 1.6 parentIdTag, 2.0.1 groupIdToken.idToken. A ``transaction_id`` is the
central system's name of a transaction as the core holds it: the 1.6 transactionId; under 2.0.1
the charger's ``local_id`` (the 2.0.1 transactionId, a UUID, stays in its adapter).
"""

from __future__ import annotations

from dataclasses import dataclass

from evcp.core.model import AuthStatus, Device, StopReason


@dataclass(frozen=True)
class PilotChanged:
    """The debounced control-pilot state of a connector changed (IEC 61851-1 A..F)."""

    connector: int
    state: str
    detail: str = ""
    """Why the pilot reads D, E or F, as the hardware tells (e.g. "EV diode missing"); else ""."""


@dataclass(frozen=True)
class TagPresented:
    """A card was presented at the reader (one event per presentation)."""

    id_tag: str


@dataclass(frozen=True)
class AuthorizationResult:
    """The answer to a RequestAuthorization action, from the central system (1.6 Authorize.conf,
    2.0.1 AuthorizeResponse) or the local list or cache; status None = no answer (offline, timeout)."""

    id_tag: str
    status: AuthStatus | None
    parent_id_tag: str | None = None
    offline: bool = False
    """Decided locally (Local Authorization List or cache) while the central system is unreachable
    (OCPP 1.6 LocalAuthorizeOffline): a start would be an offline start."""


@dataclass(frozen=True)
class TransactionStartConfirmed:
    """The central system answered the start of a transaction (``actions.ReportTransactionStart``); status
    None: it never answered (every attempt to ask it failed), like an AuthorizationResult without
    status. OCPP 1.6: StartTransaction.conf, its idTagInfo and transactionId; OCPP 2.0.1: the
    idTokenInfo of the TransactionEventResponse, or the AuthorizeResponse (or local list) that
    accepted the token before."""

    connector: int
    local_id: int
    transaction_id: int
    status: AuthStatus | None
    parent_id_tag: str | None = None


@dataclass(frozen=True)
class TransactionAuthorizationRevoked:
    """The central system answered an already accepted, running transaction's token with another
    status (e.g. an OCPP 2.0.1 TransactionEventResponse idTokenInfo Blocked after an Accepted
    AuthorizeResponse)."""

    connector: int
    local_id: int
    status: AuthStatus


@dataclass(frozen=True)
class MeterSampled:
    """A fresh reading of a connector's energy meter."""

    connector: int
    energy_wh: float
    power_w: float
    current_a: tuple[float, ...] = ()
    voltage_v: tuple[float, ...] = ()


@dataclass(frozen=True)
class DeviceFault:
    """A device failed (active) or recovered (not active). connector 0 = station-wide device."""

    connector: int
    device: Device
    active: bool
    detail: str = ""


@dataclass(frozen=True)
class CableChanged:
    """The proximity pilot of a socket outlet was read anew (IEC 61851-1 Annex B).

    ``rating_a`` is the cable's current rating (13, 20, 32 or 63 A), None when no cable is in the
    socket; ``problem`` says why the reading means no charge (out of band, unreadable), else "".
    """

    connector: int
    rating_a: float | None
    problem: str = ""


@dataclass(frozen=True)
class LockReported:
    """What the socket lock's feedback says after a LockSocket / UnlockSocket action (or at start-up).

    ``locked`` is the measured position; ``detail`` says what went wrong when it is not the one asked for.
    """

    connector: int
    locked: bool
    detail: str = ""


@dataclass(frozen=True)
class ContactorMeasured:
    """What the contactor's mirror contact says (``closed`` True = main contacts closed), for the
    connectors of ``Settings.mirror_contacts``: sent at start-up and whenever the reading changes."""

    connector: int
    closed: bool


@dataclass(frozen=True)
class Tick:
    """Time passed. The shell sends it about once a second; timers are checked against it."""


# Commands from the central system. Each is answered through an ``Answer`` action.


@dataclass(frozen=True)
class RemoteStartRequested:
    connector: int | None
    id_tag: str
    charging_profile: dict | None = None
    """A TxProfile for the transaction it starts (OCPP 1.6 §5.11), as the ocpp library hands it over."""


@dataclass(frozen=True)
class RemoteStopRequested:
    """Stop the transaction the central system names by ``transaction_id`` (the id its start was
    confirmed with), or by the charger's own ``local_id``: that one names it also while its start
    waits for the answer (OCPP 2.0.1: the CSMS knows a transactionId from the Started event before
    it answered it, Part 2 E01; the station's adapter names every transaction by ``local_id``)."""

    transaction_id: int | None
    reason: StopReason = StopReason.REMOTE
    """REMOTE for a stop request (OCPP 1.6 RemoteStopTransaction, 2.0.1 RequestStopTransaction);
    the central system's protocol may end a transaction for reasons of its own too (OCPP 2.0.1: a
    reset of its EVSE, B12; a TxStopPoint reached)."""
    why: str = "stop requested by the central system"
    local_id: int | None = None


@dataclass(frozen=True)
class AvailabilityRequested:
    connector: int
    operative: bool


@dataclass(frozen=True)
class ResetRequested:
    hard: bool


@dataclass(frozen=True)
class ShutdownRequested:
    """The power is failing (reason PowerLoss) or the service is stopping (reason Reboot)."""

    reason: StopReason


@dataclass(frozen=True)
class UnlockRequested:
    connector: int


@dataclass(frozen=True)
class ReserveNowRequested:
    """OCPP 1.6 §5.13: keep ``connector`` (0 = any connector of the charge point) for ``id_tag``
    (or a tag of the same ``parent_id_tag``) until ``expires_at``."""

    connector: int
    reservation_id: int
    id_tag: str
    expires_at: float
    parent_id_tag: str | None = None


@dataclass(frozen=True)
class CancelReservationRequested:
    reservation_id: int


@dataclass(frozen=True)
class ChargingProfileRequested:
    """SetChargingProfile (OCPP 1.6 §5.16); the profile as the ocpp library hands it over."""

    connector: int
    profile: dict
    replace_same_stack: bool = True
    """False: only a profile of the same id is replaced (OCPP 2.0.1 K01; see ChargingProfiles.set)."""


@dataclass(frozen=True)
class ClearChargingProfileRequested:
    """ClearChargingProfile (OCPP 1.6 §5.5): every criterion given must match."""

    profile_id: int | None = None
    connector: int | None = None
    purpose: str | None = None
    stack_level: int | None = None


@dataclass(frozen=True)
class MaintenanceRequested:
    """Start no new session (idle connectors Unavailable) while ``reason`` holds, e.g. a firmware
    installation waiting for running transactions to end; None lifts it."""

    reason: str | None


Event = (
    PilotChanged
    | TagPresented
    | AuthorizationResult
    | TransactionStartConfirmed
    | TransactionAuthorizationRevoked
    | MeterSampled
    | DeviceFault
    | CableChanged
    | LockReported
    | ContactorMeasured
    | Tick
    | RemoteStartRequested
    | RemoteStopRequested
    | AvailabilityRequested
    | ResetRequested
    | UnlockRequested
    | ShutdownRequested
    | ReserveNowRequested
    | CancelReservationRequested
    | ChargingProfileRequested
    | ClearChargingProfileRequested
    | MaintenanceRequested
)
