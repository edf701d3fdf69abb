"""Actions: everything the core asks the outside world to do. Plain data.

Relay and pilot actions are performed at once by the shell; the reporting
actions go to the protocol adapter, which turns them into OCPP messages.
``at`` is the core's time (seconds since the epoch) when the fact happened.

Each reporting action says which message it becomes in either protocol. Connectors, ``id_tag``
and ``transaction_id`` are as in ``evcp.core.events``.
"""

from __future__ import annotations

from dataclasses import dataclass

from evcp.core.model import ConnectorStatus, Device, ErrorCode, ReservationEnd, StopReason


@dataclass(frozen=True)
class CloseRelay:
    connector: int


@dataclass(frozen=True)
class OpenRelay:
    connector: int
    why: str


@dataclass(frozen=True)
class OfferCurrent:
    """Signal the EV it may draw up to ``amps`` (pilot PWM); None = no PWM (+12 V)."""

    connector: int
    amps: float | None


@dataclass(frozen=True)
class LockSocket:
    """Lock the plug in the socket outlet; answered by LockReported. Never while the contactor is closed."""

    connector: int


@dataclass(frozen=True)
class UnlockSocket:
    """Release the plug; answered by LockReported. Only after the contactor opened (it goes first).

    ``requested`` = asked by the central system (UnlockConnector): its answer waits for the feedback."""

    connector: int
    why: str
    requested: bool = False


@dataclass(frozen=True)
class UnlockRefused:
    """A waiting UnlockConnector cannot be done: the contacts may be live (a welded contactor);
    its answer is UnlockFailed and the plug stays locked."""

    connector: int
    why: str


@dataclass(frozen=True)
class StatusChanged:
    connector: int
    status: ConnectorStatus
    error_code: ErrorCode
    at: float
    info: str = ""


@dataclass(frozen=True)
class PowerDeliveryChanged:
    """What reaches the EV, for the protocols that report it (OCPP 2.0.1 TxStartPoint /
    TxStopPoint PowerPathClosed and EnergyTransfer): whether the contactor is closed, and whether
    energy flows through it (a reading since it closed showed the EV drawing; without any meter
    reading the closed contactor is all there is to go by)."""

    connector: int
    power_path_closed: bool
    energy_flowing: bool
    at: float


@dataclass(frozen=True)
class RequestAuthorization:
    """May ``id_tag`` charge? Answered by AuthorizationResult: OCPP 1.6 Authorize (§4.1), 2.0.1
    Authorize (Part 2 C01), or the local list or cache where the protocol's rules let them decide."""

    id_tag: str


@dataclass(frozen=True)
class Authorized:
    """The connector is authorized for ``id_tag``, but its transaction has not begun: it waits for
    the EV (the plug, the cable's rating or the plug's lock), for at most ConnectionTimeOut.
    ``remote``: the central system asked for it (RemoteStartRequested)."""

    connector: int
    id_tag: str
    remote: bool
    at: float


@dataclass(frozen=True)
class AuthorizationEnded:
    """An authorization of the connector, asked for or granted, ended without a transaction:
    ``reason`` says why (TIMEOUT: no answer or no EV within ConnectionTimeOut; LOCAL: the card was
    presented again; DEAUTHORIZED: not accepted; resets, shutdowns, unlocks; OTHER: a fault, the
    connector made unavailable)."""

    connector: int
    id_tag: str
    remote: bool
    reason: StopReason
    at: float


@dataclass(frozen=True)
class ReportTransactionStart:
    """A transaction begins: ``id_tag`` is authorized and the EV is plugged in; the central system
    must accept it (TransactionStartConfirmed) before the contactor may close. OCPP 1.6:
    StartTransaction.req (§4.8). OCPP 2.0.1: a TransactionEvent with the idToken, Started, or
    Updated when TxStartPoint EVConnected or Authorized started the transaction before (Part 2
    E01-E03); the core knows it by ``local_id``."""

    connector: int
    local_id: int
    id_tag: str
    meter_start_wh: int
    at: float
    reservation_id: int | None = None
    remote: bool = False
    """Started by the central system's request (RemoteStartRequested)."""


@dataclass(frozen=True)
class ReportTransactionStop:
    """The transaction ended (the contactor is open): ``id_tag`` is the id presented to stop it
    (None when nothing was), ``transaction_id`` None when its start was never confirmed. OCPP 1.6: StopTransaction.req
    (§4.10) with ``reason``. OCPP 2.0.1: TransactionEvent Ended, triggerReason and stoppedReason
    from ``reason`` (Part 2 E06); with TxStopPoint EVConnected alone an Updated, and the Ended when
    the cable is unplugged."""

    connector: int
    local_id: int
    transaction_id: int | None
    id_tag: str | None
    meter_stop_wh: int
    at: float
    reason: StopReason


@dataclass(frozen=True)
class ReportMeterValues:
    """A meter reading to report; local_id is the running transaction, if any."""

    connector: int
    local_id: int | None
    transaction_id: int | None
    energy_wh: float
    power_w: float
    current_a: tuple[float, ...]
    voltage_v: tuple[float, ...]
    at: float
    context: str
    """"Sample.Periodic", "Sample.Clock", "Transaction.Begin", "Transaction.End" or "Trigger"."""
    for_transaction_end: bool = False
    """Sampled to be reported with the end of its transaction, not on its own (OCPP 2.0.1
    SampledDataCtrlr.TxEndedInterval, AlignedDataCtrlr.TxEndedInterval)."""


@dataclass(frozen=True)
class Answer:
    """The answer to a command event (RemoteStartRequested, ResetRequested, ...)."""

    status: str


@dataclass(frozen=True)
class AvailabilityChanged:
    """Operative or not (connector 0 = the charge point), including a change still scheduled:
    it must survive a reboot (OCTT TC_034)."""

    connector: int
    operative: bool


@dataclass(frozen=True)
class Notice:
    """A decision worth a line in the main log (why a session did not start, ...)."""

    text: str


@dataclass(frozen=True)
class ReservationsChanged:
    """The reservations now held (to be kept across a reboot); each a ``Reservation.to_saved()``."""

    reservations: tuple[dict, ...]


@dataclass(frozen=True)
class PlugChanged:
    """The EV was plugged in (IEC 61851-1: the pilot left state A) or out. OCPP 2.0.1: EVConnected
    (a TxStartPoint / TxStopPoint, CablePluggedIn, EVCommunicationLost); OCPP 1.6 tells it by the
    status alone."""

    connector: int
    plugged: bool
    at: float


@dataclass(frozen=True)
class DeviceProblem:
    """A device's fault began (``active``, with why) or ended. ``connector`` 0: a device of the
    charge point as a whole (the card reader, the power-fail input). OCPP 1.6 tells it in the
    StatusNotification's errorCode (StatusChanged); OCPP 2.0.1 with NotifyEvent (Part 2 G05, N07:
    the component's Problem variable)."""

    connector: int
    device: Device
    active: bool
    detail: str = ""


@dataclass(frozen=True)
class ReservationEnded:
    """A reservation is over, and why (2.0.1 reports Expired and Removed: ReservationStatusUpdate)."""

    reservation_id: int
    connector: int
    """The reserved connector; 0 for a reservation of the charge point."""
    reason: ReservationEnd


@dataclass(frozen=True)
class ChargingProfilesChanged:
    """The charging profiles now installed (to be kept across a reboot, OCPP 1.6 §3.13)."""

    saved: tuple[dict, ...]


@dataclass(frozen=True)
class Restart:
    """Every transaction has been reported stopped; restart the application."""

    hard: bool


Action = (
    CloseRelay
    | OpenRelay
    | OfferCurrent
    | LockSocket
    | UnlockSocket
    | UnlockRefused
    | StatusChanged
    | PowerDeliveryChanged
    | PlugChanged
    | RequestAuthorization
    | Authorized
    | AuthorizationEnded
    | ReportTransactionStart
    | ReportTransactionStop
    | ReportMeterValues
    | Answer
    | AvailabilityChanged
    | Notice
    | ReservationsChanged
    | ReservationEnded
    | DeviceProblem
    | ChargingProfilesChanged
    | Restart
)
