"""OCPP 1.6 configuration keys (OCPP 1.6 §9, Standard Configuration Key Names & Values).

``KEYS`` is the one table of keys: name, who may set it, value type, default,
whether a change needs a reboot, and what it means. ``Configuration`` holds the
current values and answers GetConfiguration (§5.8) and ChangeConfiguration
(§5.3). Adding a feature profile's keys means adding its rows to ``KEYS``; the
Core profile's are ``CORE_KEYS``, the security whitepaper's ``SECURITY_KEYS``.

Values are kept as the strings OCPP exchanges, in canonical form ("true",
"60", "Energy.Active.Import.Register,Voltage" without spaces); ``get`` turns
them into Python values. Key names and values are CiString50Type and
CiString500Type, so names are matched and enumerated values accepted in any
letter case.

A value starts as the table default, then the installer's ``initial``
overrides of read-write keys apply, then the Central System's changes saved with ``snapshot``
(``restore``). While running, the Central System (``change``) and the
controller (``set_internal``) set values; the latest one wins.

Some keys have rules of their own (the security whitepaper's): a write-only key
is never revealed by GetConfiguration; a key the Central System may only raise
refuses a lower value; a key on trial keeps its previous value until the new
one has proved itself (``confirm_trial``), so that ``fall_back`` can put it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Callable, Literal, Mapping, Protocol, Sequence

from evcp.ocpp.security import authorization_key_problem, world_readable
from evcp.ocpp.transfer import SUPPORTED_PROTOCOLS as FILE_TRANSFER_PROTOCOLS

if TYPE_CHECKING:
    from evcp.config import OcppConfig

#: ChangeConfiguration.conf status (OCPP 1.6 §5.3).
ChangeStatus = Literal["Accepted", "Rejected", "RebootRequired", "NotSupported"]
#: A key's value as ``get`` returns it.
Value = bool | int | list[str] | str
#: Called with (key name, new value) after a key's value changed.
Listener = Callable[[str, Value], None]
#: The current value of another key, for types whose limits live in a key (a CSL's MaxLength).
Lookup = Callable[[str], Value]

#: ChangeConfiguration.req and GetConfiguration.conf carry values as CiString500Type.
MAX_VALUE_LENGTH = 500

#: What the charger can measure (OCPP 1.6 Measurand enumeration) and the phases
#: (Phase enumeration) each measurand may be qualified with, written
#: "Measurand.Phase" as in §9.1 MeterValuesSampledData ("Voltage.L1").
SUPPORTED_MEASURANDS: Mapping[str, tuple[str, ...]] = {
    "Energy.Active.Import.Register": (),
    "Power.Active.Import": (),
    "Current.Import": ("L1", "L2", "L3"),
    "Voltage": ("L1", "L2", "L3", "L1-N", "L2-N", "L3-N"),
    "Current.Offered": (),
}

#: Every item a measurand CSL may contain.
MEASURAND_ITEMS: tuple[str, ...] = tuple(
    item
    for measurand, phases in SUPPORTED_MEASURANDS.items()
    for item in (measurand, *(f"{measurand}.{phase}" for phase in phases))
)

#: Feature profile names of §9.1 SupportedFeatureProfiles.
FEATURE_PROFILES = (
    "Core",
    "FirmwareManagement",
    "LocalAuthListManagement",
    "Reservation",
    "SmartCharging",
    "RemoteTrigger",
)

#: Values of §9.1 ConnectorPhaseRotation per connector.
PHASE_ROTATIONS = ("NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR")


def split_measurand(item: str) -> tuple[str, str | None]:
    """("Current.Import", "L1") for the CSL item "Current.Import.L1"; phase None when absent."""
    for measurand in SUPPORTED_MEASURANDS:
        if item == measurand:
            return measurand, None
        if item.startswith(measurand + "."):
            return measurand, item[len(measurand) + 1 :]
    raise ValueError(f"not a supported measurand item: {item!r}")


class InvalidValue(ValueError):
    """A value does not fit its key; the message says why."""


class TooManyKeysRequested(Exception):
    """A GetConfiguration.req named more keys than GetConfigurationMaxKeys allows.

    The request handler answers it with the OCPP-J CALLERROR OccurenceConstraintViolation:
    the request is well formed but its ``key`` list is longer than this charger accepts.
    """

    def __init__(self, requested: int, limit: int):
        self.requested, self.limit = requested, limit
        super().__init__(f"{requested} keys requested, GetConfigurationMaxKeys is {limit}")


# ---------------------------------------------------------------------------
# Value types: each turns the text of a value into its canonical form or raises
# InvalidValue, and turns canonical text into a Python value.


class ValueType(Protocol):
    def normalise(self, text: str, lookup: Lookup) -> str: ...

    def parse(self, canonical: str) -> Value: ...


@dataclass(frozen=True)
class Boolean:
    """"true" or "false" in any letter case; stored in lower case."""

    def normalise(self, text: str, lookup: Lookup) -> str:
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise InvalidValue("expected true or false")
        return lowered

    def parse(self, canonical: str) -> bool:
        return canonical == "true"


_DECIMAL = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class Integer:
    """A decimal integer within [minimum, maximum]; stored without leading zeros."""

    minimum: int = 0
    maximum: int = 2**31 - 1

    def normalise(self, text: str, lookup: Lookup) -> str:
        if not _DECIMAL.fullmatch(text):
            raise InvalidValue("expected a decimal integer")
        number = int(text)
        if not self.minimum <= number <= self.maximum:
            raise InvalidValue(f"expected {self.minimum}..{self.maximum}")
        return str(number)

    def parse(self, canonical: str) -> int:
        return int(canonical)


@dataclass(frozen=True)
class Text:
    """Any printable ASCII text up to the CiString500Type length."""

    def normalise(self, text: str, lookup: Lookup) -> str:
        return text

    def parse(self, canonical: str) -> str:
        return canonical


#: Turns one CSL item into its canonical spelling or raises InvalidValue.
ItemParser = Callable[[str, Lookup], str]


def one_of(choices: Sequence[str]) -> ItemParser:
    """An item that must be one of ``choices``, matched in any letter case."""
    by_lowered = {choice.lower(): choice for choice in choices}

    def parse(item: str, lookup: Lookup) -> str:
        try:
            return by_lowered[item.lower()]
        except KeyError:
            raise InvalidValue(f"{item!r} is not one of {','.join(choices)}") from None

    return parse


_phase_rotation = one_of(PHASE_ROTATIONS)


def connector_phase_rotation(item: str, lookup: Lookup) -> str:
    """"<connectorId>.<rotation>" as in §9.1 ConnectorPhaseRotation ("0.RST,1.RTS"); 0 = grid to main meter."""
    connector, dot, rotation = item.partition(".")
    if not dot or not connector.isdigit() or not connector.isascii():
        raise InvalidValue(f"{item!r} is not <connectorId>.<rotation>")
    if int(connector) > lookup("NumberOfConnectors"):
        raise InvalidValue(f"{item!r} names an unknown connector")
    return f"{int(connector)}.{_phase_rotation(rotation, lookup)}"


def _connector_of(item: str) -> str:
    return item.partition(".")[0]


def _itself(item: str) -> str:
    return item


@dataclass(frozen=True)
class CommaSeparatedList:
    """A CSL (§9): items separated by commas, spaces around items ignored, stored without them.

    The empty string is the empty list. The item count is limited by the key
    ``max_length_key``; without one, §9 says to assume one item. Two items that
    ``identity`` maps to the same string are a repetition, which is invalid.
    """

    item: ItemParser
    max_length_key: str | None = None
    required_items: tuple[str, ...] = ()
    identity: Callable[[str], str] = _itself
    max_items: int = 1
    """The item limit when no ``max_length_key`` gives one."""

    def normalise(self, text: str, lookup: Lookup) -> str:
        items = [self.item(part.strip(), lookup) for part in text.split(",")] if text.strip() else []
        identities = [self.identity(item) for item in items]
        if len(set(identities)) != len(identities):
            raise InvalidValue("an item is repeated")
        max_items = lookup(self.max_length_key) if self.max_length_key else self.max_items
        if len(items) > max_items:
            raise InvalidValue(f"more than {max_items} items")
        missing = [required for required in self.required_items if required not in items]
        if missing:
            raise InvalidValue(f"must include {','.join(missing)}")
        return ",".join(items)

    def parse(self, canonical: str) -> list[str]:
        return canonical.split(",") if canonical else []


def measurand_list(max_length_key: str) -> CommaSeparatedList:
    return CommaSeparatedList(one_of(MEASURAND_ITEMS), max_length_key)


@dataclass(frozen=True)
class AuthorizationKeyValue:
    """The HTTP Basic password in its OCPP form (``evcp.ocpp.security``): 16 to 20 characters
    or 32 to 40 hexadecimal digits. Empty means none, which only security profile 0 allows."""

    def normalise(self, text: str, lookup: Lookup) -> str:
        if not text:
            if lookup("SecurityProfile") in (1, 2):
                raise InvalidValue("security profiles 1 and 2 need a password")
            return text
        if problem := authorization_key_problem(text):
            raise InvalidValue(problem)
        return text

    def parse(self, canonical: str) -> str:
        return canonical


# ---------------------------------------------------------------------------
# The table.


class Access(Enum):
    """Who may set a key. To the Central System every key but READ_WRITE is read-only (§9 "R")."""

    READ_WRITE = "RW"
    """The Central System may change it with ChangeConfiguration; the installer may preset it."""
    INSTALLER = "R, installer"
    """A limit this charger is built with (the table's default): read-only to the Central System
    and to the installer's ``[ocpp.keys]`` alike, so the value reported is the one enforced."""
    CONTROLLER = "R, controller"
    """A fact about the charger: only the controller sets it (``set_internal``)."""

    @property
    def readonly(self) -> bool:
        return self is not Access.READ_WRITE


@dataclass(frozen=True)
class KeySpec:
    """One configuration key: a row of ``KEYS``."""

    name: str
    access: Access
    type: ValueType
    default: str | Callable[[int], str]
    """Canonical text, or a function of the number of connectors giving it."""
    meaning: str
    reboot_required: bool = False
    """A change is stored at once but takes effect after a reboot (ChangeConfiguration RebootRequired)."""
    profile: str = "Core"
    write_only: bool = False
    """GetConfiguration answers it with an empty value, whatever it holds (a secret)."""
    only_raised: bool = False
    """The Central System may raise the value, never lower it."""
    on_trial: bool = False
    """A Central System change keeps the previous value until ``confirm_trial`` or ``fall_back``."""
    installer_key: str | None = None
    """The config file key the installer sets it with, instead of ``ocpp.keys``."""

    def default_for(self, number_of_connectors: int) -> str:
        return self.default(number_of_connectors) if callable(self.default) else self.default


#: Upper bound of the interval keys: nothing the charger schedules is meant to repeat less than daily.
SECONDS_PER_DAY = 86400
MEASURAND_LIST_MAX_ITEMS = "10"

RW, INSTALLER, CONTROLLER = Access.READ_WRITE, Access.INSTALLER, Access.CONTROLLER

#: OCPP 1.6 §9.1 Core Profile keys. Where §9.1 allows R or RW, RW is chosen.
#: BlinkRepeat and LightIntensity (optional) are absent: the charger has no lighting to drive.
CORE_KEYS: tuple[KeySpec, ...] = (
    KeySpec("AllowOfflineTxForUnknownId", RW, Boolean(), "false",
            "Offline, start transactions for unknown identifiers (Unknown Offline Authorization)."),
    KeySpec("AuthorizationCacheEnabled", RW, Boolean(), "true",
            "Remember identifiers from Central System answers in the Authorization Cache (§3.5.1)."),
    KeySpec("AuthorizeRemoteTxRequests", RW, Boolean(), "false",
            "Authorize the idTag of a RemoteStartTransaction like a local start before starting."),
    KeySpec("ClockAlignedDataInterval", RW, Integer(0, SECONDS_PER_DAY), "0",
            "Seconds between clock-aligned meter readings, counted from midnight; 0 = none."),
    KeySpec("ConnectionTimeOut", RW, Integer(1, SECONDS_PER_DAY), "60",
            "Seconds from Preparing until a transaction is abandoned because no cable was plugged in."),
    KeySpec("ConnectorPhaseRotation", RW,
            CommaSeparatedList(connector_phase_rotation, "ConnectorPhaseRotationMaxLength",
                               identity=_connector_of),
            lambda connectors: ",".join(f"{c}.Unknown" for c in range(1, connectors + 1)),
            "Phase rotation per connector relative to its meter, e.g. 0.RST,1.RTS (0 = grid connection)."),
    KeySpec("ConnectorPhaseRotationMaxLength", CONTROLLER, Integer(1),
            lambda connectors: str(connectors + 1),
            "Most items in ConnectorPhaseRotation: every connector and the grid connection."),
    KeySpec("GetConfigurationMaxKeys", INSTALLER, Integer(1), "50",
            "Most keys one GetConfiguration.req may name."),
    KeySpec("HeartbeatInterval", RW, Integer(1, SECONDS_PER_DAY), "300",
            "Seconds without OCPP traffic after which a Heartbeat.req is sent."),
    KeySpec("LocalAuthorizeOffline", RW, Boolean(), "false",
            "Offline, start transactions for locally authorized identifiers."),
    KeySpec("LocalPreAuthorize", RW, Boolean(), "false",
            "Online, start transactions for locally authorized identifiers without waiting for Authorize.conf."),
    KeySpec("MaxEnergyOnInvalidId", RW, Integer(0), "0",
            "Most Wh delivered after the Central System invalidates the identifier of a running transaction."),
    KeySpec("MeterValuesAlignedData", RW, measurand_list("MeterValuesAlignedDataMaxLength"),
            "Energy.Active.Import.Register",
            "Measurands sent in MeterValues.req every ClockAlignedDataInterval."),
    KeySpec("MeterValuesAlignedDataMaxLength", CONTROLLER, Integer(1), MEASURAND_LIST_MAX_ITEMS,
            "Most items in MeterValuesAlignedData."),
    KeySpec("MeterValuesSampledData", RW, measurand_list("MeterValuesSampledDataMaxLength"),
            "Energy.Active.Import.Register",
            "Measurands sent in MeterValues.req every MeterValueSampleInterval of a transaction."),
    KeySpec("MeterValuesSampledDataMaxLength", CONTROLLER, Integer(1), MEASURAND_LIST_MAX_ITEMS,
            "Most items in MeterValuesSampledData."),
    KeySpec("MeterValueSampleInterval", RW, Integer(0, SECONDS_PER_DAY), "60",
            "Seconds between sampled meter readings from the start of a transaction; 0 = none."),
    KeySpec("MinimumStatusDuration", RW, Integer(0, SECONDS_PER_DAY), "0",
            "Seconds a status must hold before its StatusNotification.req is sent; 0 = at once."),
    KeySpec("NumberOfConnectors", CONTROLLER, Integer(1), lambda connectors: str(connectors),
            "Number of physical charging connectors."),
    KeySpec("ResetRetries", RW, Integer(0, 100), "1",
            "Times to retry an unsuccessful reset."),
    KeySpec("StopTransactionOnEVSideDisconnect", RW, Boolean(), "true",
            "Stop the transaction when the cable is unplugged at the EV."),
    KeySpec("StopTransactionOnInvalidId", RW, Boolean(), "true",
            "Stop a transaction whose StartTransaction.conf idTagInfo is not Accepted."),
    KeySpec("StopTxnAlignedData", RW, measurand_list("StopTxnAlignedDataMaxLength"), "",
            "Clock-aligned measurands put in StopTransaction.req transactionData."),
    KeySpec("StopTxnAlignedDataMaxLength", CONTROLLER, Integer(1), MEASURAND_LIST_MAX_ITEMS,
            "Most items in StopTxnAlignedData."),
    KeySpec("StopTxnSampledData", RW, measurand_list("StopTxnSampledDataMaxLength"), "",
            "Sampled measurands put in StopTransaction.req transactionData."),
    KeySpec("StopTxnSampledDataMaxLength", CONTROLLER, Integer(1), MEASURAND_LIST_MAX_ITEMS,
            "Most items in StopTxnSampledData."),
    KeySpec("SupportedFeatureProfiles", CONTROLLER,
            CommaSeparatedList(one_of(FEATURE_PROFILES), "SupportedFeatureProfilesMaxLength",
                               required_items=("Core",)),
            ",".join(FEATURE_PROFILES),
            "Feature profiles this charger implements."),
    KeySpec("SupportedFeatureProfilesMaxLength", CONTROLLER, Integer(1), str(len(FEATURE_PROFILES)),
            "Most items in SupportedFeatureProfiles."),
    KeySpec("SupportedFileTransferProtocols", CONTROLLER,
            CommaSeparatedList(one_of(FILE_TRANSFER_PROTOCOLS), max_items=len(FILE_TRANSFER_PROTOCOLS)),
            ",".join(FILE_TRANSFER_PROTOCOLS),
            "Protocols of UpdateFirmware, GetDiagnostics and GetLog locations."),
    KeySpec("TransactionMessageAttempts", RW, Integer(1, 100), "3",
            "Times to submit a transaction-related message the Central System failed to process."),
    KeySpec("TransactionMessageRetryInterval", RW, Integer(0, SECONDS_PER_DAY), "60",
            "Seconds to wait before resubmitting such a message, times the number of attempts so far."),
    KeySpec("UnlockConnectorOnEVSideDisconnect", RW, Boolean(), "true",
            "Unlock the cable at the charger when it is unplugged at the EV."),
    # The websocket keepalive is fixed when the connection opens.
    KeySpec("WebSocketPingInterval", RW, Integer(0, SECONDS_PER_DAY), "30",
            "Seconds between websocket Pings to the Central System; 0 = none.",
            reboot_required=True),
)

#: OCPP 1.6 security whitepaper (edition 2) keys of secure connection setup.
SECURITY_KEYS: tuple[KeySpec, ...] = (
    KeySpec("AdditionalRootCertificateCheck", CONTROLLER, Boolean(), "false",
            "Replace a Central System root certificate only with one signed by the previous one "
            "(not implemented, so false).", profile="Security"),
    # Accessibility "W" in the whitepaper: written by the Central System, never read back.
    KeySpec("AuthorizationKey", RW, AuthorizationKeyValue(), "",
            "HTTP Basic password of security profiles 1 and 2: 16 to 20 characters or "
            "32 to 40 hexadecimal digits (the hex form of a 16 to 20 byte password).",
            profile="Security", write_only=True, on_trial=True, installer_key="ocpp.authorization_key"),
    KeySpec("CpoName", RW, Text(), "",
            "Name of the CPO as used in the Charge Point certificate (the O of a CSR).",
            profile="Security"),
    # Whitepaper "Migrating to a higher security profile": raised by the Central System, used
    # from the next connection, never lowered (OCTT TC_083, TC_084).
    KeySpec("SecurityProfile", RW, Integer(0, 3), "0",
            "Security profile of the connection: 0 none, 1 Basic auth, 2 TLS and Basic auth, "
            "3 TLS with a client certificate.",
            profile="Security", only_raised=True, on_trial=True, installer_key="ocpp.security_profile"),
)

#: OCPP 1.6 §9.2 Local Auth List Management Profile keys.
LOCAL_AUTH_LIST_KEYS: tuple[KeySpec, ...] = (
    KeySpec("LocalAuthListEnabled", RW, Boolean(), "true",
            "Use the Local Authorization List sent by the Central System.",
            profile="LocalAuthListManagement"),
    KeySpec("LocalAuthListMaxLength", INSTALLER, Integer(1, 100_000), "1000",
            "Most identifiers the Local Authorization List holds.", profile="LocalAuthListManagement"),
    KeySpec("SendLocalListMaxLength", INSTALLER, Integer(1, 100_000), "250",
            "Most identifiers one SendLocalList.req may carry.", profile="LocalAuthListManagement"),
)

#: OCPP 1.6 §9.3 Reservation Profile keys.
RESERVATION_KEYS: tuple[KeySpec, ...] = (
    KeySpec("ReserveConnectorZeroSupported", INSTALLER, Boolean(), "true",
            "ReserveNow.req may reserve the charge point (connectorId 0) rather than one connector.",
            profile="Reservation"),
)

#: OCPP 1.6 §9.4 Smart Charging Profile keys.
SMART_CHARGING_KEYS: tuple[KeySpec, ...] = (
    KeySpec("ChargeProfileMaxStackLevel", INSTALLER, Integer(0, 100), "10",
            "Highest stackLevel a charging profile may have.", profile="SmartCharging"),
    KeySpec("ChargingScheduleAllowedChargingRateUnit", INSTALLER,
            CommaSeparatedList(one_of(("Current", "Power")), max_items=2), "Current,Power",
            "Units a charging schedule may use: Current (A) and Power (W).", profile="SmartCharging"),
    KeySpec("ChargingScheduleMaxPeriods", INSTALLER, Integer(1, 1000), "24",
            "Most periods one charging schedule may have.", profile="SmartCharging"),
    KeySpec("ConnectorSwitch3to1PhaseSupported", CONTROLLER, Boolean(), "false",
            "Switching from 3 to 1 phase during a transaction (the contactor switches all phases together).",
            profile="SmartCharging"),
    KeySpec("MaxChargingProfilesInstalled", INSTALLER, Integer(1, 1000), "20",
            "Most charging profiles installed at once.", profile="SmartCharging"),
)

#: Security whitepaper (edition 2) certificate management keys.
CERTIFICATE_KEYS: tuple[KeySpec, ...] = (
    KeySpec("CertificateSignedMaxChainSize", INSTALLER, Integer(1, 100_000), "10000",
            "Most bytes of the certificate chain of one CertificateSigned.req.", profile="Security"),
    KeySpec("CertificateStoreMaxLength", INSTALLER, Integer(1, 1000), "20",
            "Most root certificates installed with InstallCertificate.req.", profile="Security"),
)

KEYS: tuple[KeySpec, ...] = (CORE_KEYS + SECURITY_KEYS + CERTIFICATE_KEYS + LOCAL_AUTH_LIST_KEYS
                             + RESERVATION_KEYS + SMART_CHARGING_KEYS)


# ---------------------------------------------------------------------------


def _shown(text: object) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


class Configuration:
    """The charger's OCPP configuration keys and their current values."""

    def __init__(self, number_of_connectors: int, initial: Mapping[str, str] | None = None):
        """Defaults from ``KEYS``, then the installer's ``initial`` overrides.

        Raises ValueError naming the key and the problem for an unknown key, an
        invalid value, or a read-only key (§9 "R": what GetConfiguration reports
        as readonly is never preset either).
        """
        if number_of_connectors < 1:
            raise ValueError(f"NumberOfConnectors: expected at least 1 (got {number_of_connectors})")
        self._specs = {spec.name.lower(): spec for spec in KEYS}
        self._values = {spec.name: spec.default_for(number_of_connectors) for spec in KEYS}
        self._changed_by_central_system: set[str] = set()
        self._listeners: list[Listener] = []
        self._trial: dict[str, tuple[str, bool]] = {}
        """Key on trial -> (previous canonical value, whether the Central System had set it)."""
        for key, value in (initial or {}).items():
            spec = self._known(key)
            if spec.access is Access.CONTROLLER:
                raise ValueError(f"{spec.name}: read-only, set by the controller")
            if spec.access.readonly:
                raise ValueError(f"{spec.name}: read-only, a limit of this charge point"
                                 f" ({spec.default_for(number_of_connectors)})")
            if spec.installer_key:
                raise ValueError(f"{spec.name}: set {spec.installer_key} instead")
            self._values[spec.name] = self._normalise(spec, value)

    def get(self, name: str) -> Value:
        """The current value as bool, int, list[str] or str. KeyError for an unknown key."""
        spec = self._specs.get(name.lower())
        if spec is None:
            raise KeyError(name)
        return spec.type.parse(self._values[spec.name])

    def get_configuration(
        self, keys: Sequence[str] | None = None
    ) -> tuple[list[dict[str, object]], list[str]]:
        """GetConfiguration.conf (§5.8): (configurationKey entries, unknownKey).

        No keys or an empty list answers every key. A key named twice is answered
        once. More keys than GetConfigurationMaxKeys raise TooManyKeysRequested.
        """
        if not keys:
            return [self._key_value(spec) for spec in self._specs.values()], []
        limit = self.get("GetConfigurationMaxKeys")
        if len(keys) > limit:
            raise TooManyKeysRequested(len(keys), limit)
        answered: dict[str, dict[str, object]] = {}
        unknown: list[str] = []
        for key in keys:
            spec = self._specs.get(key.lower())
            if spec is None:
                if key not in unknown:
                    unknown.append(key)
            elif spec.name not in answered:
                answered[spec.name] = self._key_value(spec)
        return list(answered.values()), unknown

    def change(self, key: str, value: str) -> ChangeStatus:
        """ChangeConfiguration (§5.3): NotSupported for an unknown key, Rejected for a
        read-only key, an invalid value or a lower value of a key that may only be raised,
        else the value is stored and Accepted, or RebootRequired when the key takes effect
        only after a reboot. A changed key on trial remembers its previous value.
        """
        spec = self._specs.get(key.lower())
        if spec is None:
            return "NotSupported"
        previous = self._values[spec.name]
        previously_changed = spec.name in self._changed_by_central_system
        try:
            if spec.only_raised and not spec.access.readonly:
                new = spec.type.parse(self._normalise(spec, value))
                if new < spec.type.parse(previous):
                    raise InvalidValue(f"{spec.name}: may only be raised")
            self._set_by_central_system(spec, value)
        except InvalidValue:
            return "Rejected"
        if spec.on_trial and self._values[spec.name] != previous and spec.name not in self._trial:
            self._trial[spec.name] = (previous, previously_changed)
        return "RebootRequired" if spec.reboot_required else "Accepted"

    def on_trial(self) -> list[str]:
        """Keys changed by the Central System whose previous value is kept for ``fall_back``."""
        return sorted(self._trial)

    def confirm_trial(self, *keys: str) -> list[str]:
        """The new values of ``keys`` (all keys on trial without any) proved themselves: forget
        the previous ones. Returns the keys confirmed."""
        wanted = {key.lower() for key in keys}
        confirmed = [name for name in self.on_trial() if not wanted or name.lower() in wanted]
        for name in confirmed:
            del self._trial[name]
        return confirmed

    def fall_back(self) -> list[str]:
        """Put back the values the keys on trial had before (whitepaper: when the new security
        settings cannot connect, the previous ones are used again). Returns the keys.

        This is the one way a key that may only be raised goes down again.
        """
        trial, self._trial = self._trial, {}
        for name, (previous, previously_changed) in sorted(trial.items()):
            if previously_changed:
                self._changed_by_central_system.add(name)
            else:
                self._changed_by_central_system.discard(name)
            self._store(self._specs[name.lower()], previous)
        return sorted(trial)

    def on_change(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(key, new value)`` whenever a key's value changes; returns the unsubscriber.

        Every listener is called even when one raises; the failures then reach the
        caller of the change as an ExceptionGroup, with the value already stored.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def set_internal(self, key: str, value: str) -> None:
        """Set any key as the controller (e.g. SupportedFeatureProfiles, or HeartbeatInterval
        from BootNotification.conf). The value is not part of ``snapshot``: the controller
        sets it again on every start. Raises ValueError naming the key and the problem.
        """
        spec = self._known(key)
        canonical = self._normalise(spec, value)
        self._changed_by_central_system.discard(spec.name)
        self._store(spec, canonical)

    def snapshot(self) -> dict[str, str]:
        """The values the Central System changed, to be saved and given to ``restore``."""
        return {name: self._values[name] for name in sorted(self._changed_by_central_system)}

    def restore(self, saved: Mapping[str, str]) -> list[str]:
        """Re-apply values from ``snapshot``; they take precedence over ``initial``.

        Entries that no longer fit (unknown key, read-only key, invalid value) are
        skipped; the returned list has one warning per skipped entry.
        """
        warnings = []
        for key, value in saved.items():
            spec = self._specs.get(key.lower())
            if spec is None:
                warnings.append(f"{key}: unknown configuration key, ignored")
                continue
            try:
                self._set_by_central_system(spec, value)
            except InvalidValue as problem:
                warnings.append(f"{problem}, ignored")
        return warnings

    def _known(self, key: str) -> KeySpec:
        spec = self._specs.get(key.lower()) if isinstance(key, str) else None
        if spec is None:
            raise ValueError(f"{key}: unknown OCPP configuration key")
        return spec

    def _key_value(self, spec: KeySpec) -> dict[str, object]:
        value = "" if spec.write_only else self._values[spec.name]
        return {"key": spec.name, "readonly": spec.access.readonly, "value": value}

    def _normalise(self, spec: KeySpec, text: str) -> str:
        """The canonical form of ``text`` for ``spec``; InvalidValue names the key and the problem."""
        try:
            if not isinstance(text, str):
                raise InvalidValue("expected a string")
            if len(text) > MAX_VALUE_LENGTH:
                raise InvalidValue(f"longer than {MAX_VALUE_LENGTH} characters")
            if not (text.isascii() and text.isprintable()):
                raise InvalidValue("not printable ASCII")
            return spec.type.normalise(text, self.get)
        except InvalidValue as problem:
            got = "" if spec.write_only else f" (got {_shown(text)})"
            raise InvalidValue(f"{spec.name}: {problem}{got}") from None

    def _set_by_central_system(self, spec: KeySpec, value: str) -> None:
        if spec.access.readonly:
            raise InvalidValue(f"{spec.name}: read-only for the Central System")
        canonical = self._normalise(spec, value)
        self._changed_by_central_system.add(spec.name)
        self._store(spec, canonical)

    def _store(self, spec: KeySpec, canonical: str) -> None:
        if self._values[spec.name] == canonical:
            return
        self._values[spec.name] = canonical
        value = spec.type.parse(canonical)
        failures = []
        for listener in list(self._listeners):
            try:
                listener(spec.name, value)
            except Exception as failure:
                failures.append(failure)
        if failures:
            raise ExceptionGroup(f"listeners of {spec.name} failed", failures)


# ---------------------------------------------------------------------------
# The installer's settings


def apply_installer_settings(configuration: "Configuration", ocpp: "OcppConfig") -> list[str]:
    """Put ``ocpp.security_profile`` and ``ocpp.authorization_key`` into the OCPP keys.

    A value the central system set (restored from the state database) wins over the
    installer's, except that the installer may raise the profile above it. Returns the
    problems to log; nothing here raises.
    """
    problems = []
    changed_by_central_system = configuration.snapshot()
    if ocpp.authorization_key and "AuthorizationKey" not in changed_by_central_system:
        try:
            configuration.set_internal("AuthorizationKey", ocpp.authorization_key)
        except ValueError as error:
            problem = str(error).split(": ", 1)[-1]  # without the OCPP key name
            problems.append(f"ocpp.authorization_key: {problem}; it is not used")
    if ocpp.security_profile > int(configuration.get("SecurityProfile")):
        configuration.set_internal("SecurityProfile", str(ocpp.security_profile))
    installer_key_in_use = ocpp.authorization_key and configuration.get("AuthorizationKey")
    if installer_key_in_use and int(configuration.get("SecurityProfile")) == 0:
        problems.append("an AuthorizationKey is set but security profile 0 sends no credentials; "
                        "set ocpp.security_profile = 1 or 2 to use it")
    if ocpp.client_key_file is not None and world_readable(ocpp.client_key_file):
        problems.append(f"ocpp.client_key_file: {ocpp.client_key_file} is readable by every user; "
                        "make it readable by the evcp user only")
    return problems
