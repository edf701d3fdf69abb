"""The charger's vocabulary: statuses, reasons and faults in charger terms, for both protocols.

Each value is a word OCPP 1.6 uses too, which its adapter sends as it is; the OCPP 2.0.1 adapter
translates where 2.0.1 says it otherwise:

* ConnectorStatus: 2.0.1 ConnectorStatusEnumType (Part 2 G01), where Preparing, Charging,
  SuspendedEV, SuspendedEVSE and Finishing are all Occupied, and the transaction's chargingState
  (E: Charging, SuspendedEV, SuspendedEVSE, else EVConnected or Idle);
* StopReason: 2.0.1 triggerReason and stoppedReason (E06, ReasonEnumType); HardReset and
  SoftReset are both ImmediateReset (``evcp.ocpp201.transactions.STOP_REASONS``);
* AuthStatus: 2.0.1 AuthorizationStatusEnumType; its values without a 1.6 counterpart
  (NoCredit, NotAtThisLocation, Unknown, ...) are Invalid here;
* ErrorCode: 2.0.1's StatusNotification has no error code, only the connector status Faulted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ConnectorStatus(str, Enum):
    """What a driver sees at the connector (OCPP 1.6 §4.9 ChargePointStatus)."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class StopReason(str, Enum):
    """Why a transaction ended (OCPP 1.6 §7.45 Reason)."""

    LOCAL = "Local"
    REMOTE = "Remote"
    EV_DISCONNECTED = "EVDisconnected"
    DEAUTHORIZED = "DeAuthorized"
    HARD_RESET = "HardReset"
    SOFT_RESET = "SoftReset"
    POWER_LOSS = "PowerLoss"
    REBOOT = "Reboot"
    UNLOCK_COMMAND = "UnlockCommand"
    EMERGENCY_STOP = "EmergencyStop"
    OTHER = "Other"
    TIMEOUT = "Timeout"
    """Only an authorization ends for it (no EV, or no answer, within ConnectionTimeOut), never a
    transaction; OCPP 2.0.1 ReasonEnumType Timeout."""


class AuthStatus(str, Enum):
    """The central system's verdict on an id tag (OCPP 1.6 §7.2 AuthorizationStatus)."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


class ReservationEnd(str, Enum):
    """Why a reservation ended (OCPP 1.6 §5.13; 2.0.1 Part 2 H01-H04)."""

    USED = "Used"  # its transaction started
    EXPIRED = "Expired"
    CANCELLED = "Cancelled"  # by the central system
    REMOVED = "Removed"  # its connector or the charge point became Faulted or Unavailable


class Device(str, Enum):
    """The devices whose faults the core hears about."""

    METER = "meter"
    RELAY = "relay"
    READER = "reader"
    PILOT = "pilot"
    CABLE = "cable"
    """The proximity pilot (PP) of a socket outlet: the cable's rating resistor."""
    LOCK = "lock"
    """The actuator that locks the plug in a socket outlet, with its feedback contact."""
    POWER_FAIL_INPUT = "power-fail input"
    """The UPS's or supply monitor's input that says the mains is failing (charge point as a whole)."""


class ErrorCode(str, Enum):
    """What is wrong at a connector (OCPP 1.6 §7.6 ChargePointErrorCode, the subset we detect)."""

    NO_ERROR = "NoError"
    POWER_METER_FAILURE = "PowerMeterFailure"
    POWER_SWITCH_FAILURE = "PowerSwitchFailure"
    READER_FAILURE = "ReaderFailure"
    CONNECTOR_LOCK_FAILURE = "ConnectorLockFailure"
    EV_COMMUNICATION_ERROR = "EVCommunicationError"
    GROUND_FAILURE = "GroundFailure"
    OTHER_ERROR = "OtherError"


@dataclass(frozen=True)
class Settings:
    """Behaviour the operator may change at run time (the adapters map their keys here)."""

    connection_timeout_s: float = 60.0
    """Authorized but no cable (or cable but no authorization) for this long: give up."""
    stop_on_ev_disconnect: bool = True
    stop_on_invalid_id: bool = True
    authorize_remote_start: bool = False
    meter_sample_interval_s: float = 60.0
    """0 = no periodic meter values during transactions."""
    clock_aligned_interval_s: float = 0.0
    """0 = no clock-aligned meter values."""
    end_sample_interval_s: float = 0.0
    end_clock_aligned_interval_s: float = 0.0
    """Readings during a transaction kept for its end, every interval from its start and on the
    clock's interval boundaries (OCPP 2.0.1 TxEndedInterval); 0 = none."""
    max_current_a: float = 32.0
    tethered_cable: bool = False
    cable_sensing: tuple[int, ...] = ()
    """Socket outlets whose cable rating is read from the proximity pilot (IEC 61851-1 Annex B):
    no session starts there without a valid rating, and the offer never exceeds it."""
    socket_locks: tuple[int, ...] = ()
    """Socket outlets with a lock actuator and feedback: the plug is locked before the contactor
    may close and unlocked once the session is over."""
    mirror_contacts: tuple[int, ...] = ()
    """Connectors whose contactor has a mirror contact (relay.feedback_pin): their socket is
    unlocked only once it reads the contacts open and no contactor fault (welded) is latched."""
    unlock_on_ev_disconnect: bool = True
    """UnlockConnectorOnEVSideDisconnect: unlock the socket when the cable is pulled at the EV;
    when false it stays locked until the session's card is presented again or UnlockConnector."""
    require_meter: bool = True
    """No new session while the energy meter is failing."""
    offline_start: bool = False
    """Installer opt-in: a session may start while the central system is unreachable,
    before the central system accepted it (1.6 StartTransaction.conf, 2.0.1 idTokenInfo; breaks
    "no energy before Accepted" on purpose)."""
    allow_offline_unknown: bool = False
    """AllowOfflineTxForUnknownId: with offline_start, an unknown tag may start offline."""
    max_energy_on_invalid_wh: float = 0.0
    """MaxEnergyOnInvalidId: energy still allowed after a late non-Accepted answer
    when stop_on_invalid_id is false."""
    reserve_connector_zero: bool = True
    """ReserveConnectorZeroSupported: ReserveNow may reserve the charge point as a whole."""
    phases: int = 3
    """Phases wired to each connector; converts W limits of charging profiles to A."""
    voltage_v: float = 230.0
    """Nominal line-to-neutral voltage; converts W limits of charging profiles to A."""
    max_stack_level: int = 10
    max_schedule_periods: int = 24
    max_charging_profiles: int = 20
    charging_rate_units: tuple[str, ...] = ("Current", "Power")
