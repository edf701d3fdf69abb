"""The OCPP 2.0.1 device model of this charging station: components, variables, their values.

OCPP 2.0.1 Part 1 §4 and Part 2 "B. Provisioning": a variable is named by its component (name,
instance, EVSE) and its own name (and instance); it has attributes (Actual, Target, MinSet,
MaxSet), of which this station keeps Actual only, a data type and a mutability. GetVariables and
SetVariables read and write it; GetBaseReport lists it in NotifyReport. Values set by the CSMS
are persisted (the caller stores ``saved()``) and come back after a restart.

Only variables this station acts on are listed: the ones in TxCtrlr, AuthCtrlr, AuthCacheCtrlr,
LocalAuthListCtrlr, SampledDataCtrlr, AlignedDataCtrlr, SmartChargingCtrlr and OCPPCommCtrlr drive
the adapter and the core (``settings_from``: every core setting that is not the installer's comes
from here under 2.0.1), the rest describe the station.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import evcp
from evcp.core.model import Settings
from evcp.ocpp.security import basic_auth_password_problem
from evcp.ocpp201.problems import AT_CONNECTOR, COMPONENTS, STATION_DEVICES

if TYPE_CHECKING:
    from evcp.config import Config

TX_POINTS = ("ParkingBayOccupancy", "EVConnected", "Authorized", "DataSigned", "PowerPathClosed", "EnergyTransfer")
"""TxStartPoint / TxStopPoint values (Part 2 §2.6 "Flexible transaction start/stop")."""
SUPPORTED_TX_POINTS = ("EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer")
MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage",
              "Current.Offered")
"""The measurands this station's meter and pilot give."""
LOCAL_LIST_ENTRIES = 1000
"""LocalAuthListCtrlr.Entries maxLimit: most tokens the local authorization list holds."""
OCPP16_EQUIVALENTS = {
    "HeartbeatInterval": "OCPPCommCtrlr.HeartbeatInterval",
    "WebSocketPingInterval": "OCPPCommCtrlr.WebSocketPingInterval",
    "TransactionMessageAttempts": "OCPPCommCtrlr.MessageAttempts.TransactionEvent",
    "TransactionMessageRetryInterval": "OCPPCommCtrlr.MessageAttemptInterval.TransactionEvent",
    "UnlockConnectorOnEVSideDisconnect": "OCPPCommCtrlr.UnlockOnEVSideDisconnect",
    "ConnectionTimeOut": "TxCtrlr.EVConnectionTimeOut",
    "StopTransactionOnEVSideDisconnect": "TxCtrlr.StopTxOnEVSideDisconnect",
    "StopTransactionOnInvalidId": "TxCtrlr.StopTxOnInvalidId",
    "MaxEnergyOnInvalidId": "TxCtrlr.MaxEnergyOnInvalidId",
    "AuthorizeRemoteTxRequests": "AuthCtrlr.AuthorizeRemoteStart",
    "LocalPreAuthorize": "AuthCtrlr.LocalPreAuthorize",
    "LocalAuthorizeOffline": "AuthCtrlr.LocalAuthorizeOffline",
    "AllowOfflineTxForUnknownId": "AuthCtrlr.OfflineTxForUnknownIdEnabled",
    "AuthorizationCacheEnabled": "AuthCacheCtrlr.Enabled",
    "LocalAuthListEnabled": "LocalAuthListCtrlr.Enabled",
    "LocalAuthListMaxLength": "LocalAuthListCtrlr.Entries",
    "SendLocalListMaxLength": "LocalAuthListCtrlr.ItemsPerMessage",
    "MeterValueSampleInterval": "SampledDataCtrlr.TxUpdatedInterval",
    "MeterValuesSampledData": "SampledDataCtrlr.TxUpdatedMeasurands",
    "StopTxnSampledData": "SampledDataCtrlr.TxEndedMeasurands",
    "ClockAlignedDataInterval": "AlignedDataCtrlr.Interval",
    "MeterValuesAlignedData": "AlignedDataCtrlr.Measurands",
    "ChargeProfileMaxStackLevel": "SmartChargingCtrlr.ProfileStackLevel",
    "ChargingScheduleMaxPeriods": "SmartChargingCtrlr.PeriodsPerSchedule",
    "MaxChargingProfilesInstalled": "SmartChargingCtrlr.Entries.ChargingProfiles",
    "GetConfigurationMaxKeys": "DeviceDataCtrlr.ItemsPerMessage.GetVariables",
    "CpoName": "SecurityCtrlr.OrganizationName",
    "CertificateSignedMaxChainSize": "SecurityCtrlr.MaxCertificateChainSize",
}
"""OCPP 1.6 configuration key -> the variable of this device model that means the same (by
``name_of``), with the same value text (seconds, true/false, comma-separated measurands)."""
OCPP16_KEY_OF = {variable: key for key, variable in OCPP16_EQUIVALENTS.items()}
SET_ELSEWHERE = {
    "SecurityCtrlr.BasicAuthPassword": "ocpp.authorization_key",
    "SecurityCtrlr.SecurityProfile": "ocpp.security_profile",
    "SecurityCtrlr.Identity": "charge_point.id",
    "ChargingStation.VendorName": "charge_point.vendor",
    "ChargingStation.Model": "charge_point.model",
    "ChargingStation.SerialNumber": "charge_point.serial_number",
    "OCPPCommCtrlr.NetworkConfigurationPriority": "ocpp.csms_url (slot 0; the CSMS adds others with "
                                                  "SetNetworkProfile)",
}
"""Variables whose value the installer gives elsewhere in the config file."""


@dataclass(frozen=True)
class VariableKey:
    component: str
    variable: str
    evse: int | None = None
    component_instance: str | None = None
    variable_instance: str | None = None


@dataclass
class Variable:
    key: VariableKey
    data_type: str
    """DataEnumType: string, decimal, integer, dateTime, boolean, OptionList, SequenceList, MemberList."""
    value: str
    mutability: str = "ReadWrite"
    """MutabilityEnumType: ReadOnly, WriteOnly, ReadWrite."""
    unit: str | None = None
    values_list: tuple[str, ...] = ()
    """Allowed values (OptionList) or members (MemberList)."""
    min_value: int | None = None
    max_value: int | None = None
    persistent: bool = True
    rule: Callable[[str], str | None] | None = None
    """A check of its own beyond the data type's (a password's length): why not, or None."""

    def check(self, text: str) -> str | None:
        """Why ``text`` cannot be this variable's value, or None."""
        if self.rule is not None and (problem := self.rule(text)) is not None:
            return problem
        if self.data_type == "boolean":
            return None if text in ("true", "false") else "must be true or false"
        if self.data_type == "integer":
            try:
                number = int(text)
            except ValueError:
                return "must be an integer"
            if self.min_value is not None and number < self.min_value:
                return f"must be at least {self.min_value}"
            if self.max_value is not None and number > self.max_value:
                return f"must be at most {self.max_value}"
            return None
        if self.data_type == "decimal":
            try:
                number = float(text)
            except ValueError:
                return "must be a number"
            if not math.isfinite(number):
                return "must be a finite number"
            if self.min_value is not None and number < self.min_value:
                return f"must be at least {self.min_value}"
            if self.max_value is not None and number > self.max_value:
                return f"must be at most {self.max_value}"
            return None
        if self.data_type == "MemberList":
            members = [m for m in text.split(",") if m] if text else []
            unknown = [m for m in members if m not in self.values_list]
            return f"unknown member {unknown[0]}" if unknown else None
        if self.data_type == "OptionList":
            return None if text in self.values_list else f"must be one of {', '.join(self.values_list)}"
        return None


@dataclass(frozen=True)
class Result:
    status: str
    """GetVariableStatusEnumType / SetVariableStatusEnumType."""
    value: str | None = None
    reason: str | None = None


def _bool(value: bool) -> str:
    return "true" if value else "false"


def station_variables(connectors: int, vendor: str, model: str, serial_number: str | None,
                      firmware_version: str, socket_outlet: bool = True) -> list[Variable]:
    """Every variable this station reports, with its default value. Each EVSE has a type 2
    socket outlet (ConnectorType sType2, with a plug lock and a proximity pilot) or, with
    ``socket_outlet`` false, a tethered type 2 cable (cType2)."""
    connector_type = "sType2" if socket_outlet else "cType2"
    evse_devices = [d for d in COMPONENTS if d not in STATION_DEVICES and (socket_outlet or d not in AT_CONNECTOR)]
    def v(component: str, variable: str, data_type: str, value: str, **extra) -> Variable:
        evse = extra.pop("evse", None)
        key = VariableKey(component, variable, evse, extra.pop("component_instance", None),
                          extra.pop("variable_instance", None))
        return Variable(key, data_type, value, **extra)

    ro = {"mutability": "ReadOnly", "persistent": False}
    items = [
        v("ChargingStation", "Model", "string", model, **ro),
        v("ChargingStation", "VendorName", "string", vendor, **ro),
        v("ChargingStation", "SerialNumber", "string", serial_number or "", **ro),
        v("ChargingStation", "FirmwareVersion", "string", firmware_version, **ro),
        v("ChargingStation", "AvailabilityState", "OptionList", "Available", **ro,
          values_list=("Available", "Occupied", "Reserved", "Unavailable", "Faulted")),
        v("OCPPCommCtrlr", "HeartbeatInterval", "integer", "300", unit="s", min_value=1, max_value=86400),
        v("OCPPCommCtrlr", "MessageTimeout", "integer", "30", unit="s", variable_instance="Default",
          min_value=1, max_value=600),
        v("OCPPCommCtrlr", "MessageAttempts", "integer", "3", variable_instance="TransactionEvent",
          min_value=1, max_value=20),
        v("OCPPCommCtrlr", "MessageAttemptInterval", "integer", "60", unit="s",
          variable_instance="TransactionEvent", min_value=1, max_value=3600),
        v("OCPPCommCtrlr", "WebSocketPingInterval", "integer", "0", unit="s", min_value=0, max_value=3600),
        # Part 2 E10: a socket outlet's plug is released when the cable is pulled at the EV side.
        v("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", "boolean", "true"),
        v("DeviceDataCtrlr", "ItemsPerMessage", "integer", "20", variable_instance="GetReport", **ro),
        v("DeviceDataCtrlr", "ItemsPerMessage", "integer", "20", variable_instance="GetVariables", **ro),
        v("DeviceDataCtrlr", "ItemsPerMessage", "integer", "20", variable_instance="SetVariables", **ro),
        v("DeviceDataCtrlr", "BytesPerMessage", "integer", "65000", variable_instance="GetReport", **ro),
        v("TxCtrlr", "EVConnectionTimeOut", "integer", "60", unit="s", min_value=1, max_value=3600),
        v("TxCtrlr", "StopTxOnEVSideDisconnect", "boolean", "true"),
        v("TxCtrlr", "StopTxOnInvalidId", "boolean", "true"),
        # Part 2 E05: with StopTxOnInvalidId false, the energy still delivered after the CSMS refused
        # the IdToken of a running transaction; 0: none (the contactor opens at once).
        v("TxCtrlr", "MaxEnergyOnInvalidId", "integer", "0", unit="Wh", min_value=0),
        v("TxCtrlr", "TxStartPoint", "MemberList", "PowerPathClosed", values_list=SUPPORTED_TX_POINTS),
        v("TxCtrlr", "TxStopPoint", "MemberList", "EVConnected,Authorized", values_list=SUPPORTED_TX_POINTS),
        v("AuthCtrlr", "AuthorizeRemoteStart", "boolean", "false"),
        v("AuthCtrlr", "Enabled", "boolean", "true", **ro),
        # Part 2 C12-C15 and D01: local authorization (evcp.ocpp201.authorization).
        v("AuthCtrlr", "LocalPreAuthorize", "boolean", "false"),
        v("AuthCtrlr", "LocalAuthorizeOffline", "boolean", "false"),
        v("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "boolean", "false"),
        v("AuthCacheCtrlr", "Enabled", "boolean", "true"),
        v("AuthCacheCtrlr", "Available", "boolean", "true", **ro),
        v("AuthCacheCtrlr", "LifeTime", "integer", "604800", unit="s", min_value=0, max_value=31536000),
        v("AuthCacheCtrlr", "Storage", "integer", "0", unit="B", **ro),
        v("AuthCacheCtrlr", "Policy", "OptionList", "LRU", values_list=("LRU",)),
        v("AuthCacheCtrlr", "DisablePostAuthorize", "boolean", "false"),
        v("LocalAuthListCtrlr", "Enabled", "boolean", "true"),
        v("LocalAuthListCtrlr", "Available", "boolean", "true", **ro),
        v("LocalAuthListCtrlr", "Entries", "integer", "0", max_value=LOCAL_LIST_ENTRIES, **ro),
        v("LocalAuthListCtrlr", "ItemsPerMessage", "integer", "100", **ro),
        v("LocalAuthListCtrlr", "BytesPerMessage", "integer", "16384", unit="B", **ro),
        v("LocalAuthListCtrlr", "Storage", "integer", "0", unit="B", **ro),
        v("SampledDataCtrlr", "TxUpdatedInterval", "integer", "60", unit="s", min_value=0, max_value=86400),
        v("SampledDataCtrlr", "TxStartedMeasurands", "MemberList", "Energy.Active.Import.Register",
          values_list=MEASURANDS),
        v("SampledDataCtrlr", "TxUpdatedMeasurands", "MemberList", "Energy.Active.Import.Register,Power.Active.Import",
          values_list=MEASURANDS),
        v("SampledDataCtrlr", "TxEndedMeasurands", "MemberList", "Energy.Active.Import.Register",
          values_list=MEASURANDS),
        # Part 2 J02: readings every TxEndedInterval of the transaction (0 = none), sent with its Ended.
        v("SampledDataCtrlr", "TxEndedInterval", "integer", "0", unit="s", min_value=0, max_value=86400),
        v("AlignedDataCtrlr", "Interval", "integer", "0", unit="s", min_value=0, max_value=86400),
        v("AlignedDataCtrlr", "Measurands", "MemberList", "Energy.Active.Import.Register", values_list=MEASURANDS),
        v("AlignedDataCtrlr", "TxEndedMeasurands", "MemberList", "Energy.Active.Import.Register",
          values_list=MEASURANDS),
        v("AlignedDataCtrlr", "TxEndedInterval", "integer", "0", unit="s", min_value=0, max_value=86400),
        # Part 2 K (evcp.ocpp201.smart_charging): the profile memory of the core's store.
        v("SmartChargingCtrlr", "Enabled", "boolean", "true", **ro),
        v("SmartChargingCtrlr", "Available", "boolean", "true", **ro),
        v("SmartChargingCtrlr", "ProfileStackLevel", "integer", "10", **ro),
        v("SmartChargingCtrlr", "PeriodsPerSchedule", "integer", "24", **ro),
        v("SmartChargingCtrlr", "Entries", "integer", "20", variable_instance="ChargingProfiles", **ro),
        v("SmartChargingCtrlr", "RateUnit", "MemberList", "A,W", values_list=("A", "W"), **ro),
        v("SmartChargingCtrlr", "LimitChangeSignificance", "decimal", "1.0", unit="Percent", min_value=0,
          max_value=100),
        v("SmartChargingCtrlr", "ExternalControlSignalsEnabled", "boolean", "false", **ro),
        # Part 2 H (evcp.ocpp201.reservations): the core's reservations.
        v("ReservationCtrlr", "Available", "boolean", "true", **ro),
        v("ReservationCtrlr", "Enabled", "boolean", "true"),
        v("ReservationCtrlr", "NonEvseSpecific", "boolean", "true"),
    ]
    # Part 2 G05, N07 (evcp.ocpp201.problems): a device's fault is its component's Problem.
    items += [v(COMPONENTS[device], "Problem", "boolean", "false", **ro) for device in STATION_DEVICES]
    for evse in range(1, connectors + 1):
        items.append(v("EVSE", "AvailabilityState", "OptionList", "Available", evse=evse, **ro,
                       values_list=("Available", "Occupied", "Reserved", "Unavailable", "Faulted")))
        items.append(v("Connector", "ConnectorType", "string", connector_type, evse=evse, **ro))
        items += [v(COMPONENTS[device], "Problem", "boolean", "false", evse=evse, **ro) for device in evse_devices]
    return items


def security_variables(profile: int, identity: str, basic_auth_password: str, max_chain_size: int) -> list[Variable]:
    """SecurityCtrlr (Part 2 A, Appendix "Security related"): the profile in force (set by the
    installer, ``ocpp.security_profile``), the Basic authentication identity (the station id of
    the URL) and password (write-only; the CSMS changes it with SetVariables, A01), the O of the
    certificate signing request (A02) and how often it is sent again without an answer, and the
    installed certificates' count (kept current by ``evcp.ocpp201.security``); the order in which
    the NetworkConnectionProfiles are tried (B09/B10, A05: slot 0 is the installer's)."""
    ro = {"mutability": "ReadOnly", "persistent": False}
    return [
        Variable(VariableKey("SecurityCtrlr", "SecurityProfile"), "integer", str(profile), **ro),
        Variable(VariableKey("SecurityCtrlr", "Identity"), "string", identity, **ro),
        Variable(VariableKey("SecurityCtrlr", "BasicAuthPassword"), "string", basic_auth_password,
                 mutability="WriteOnly", rule=basic_auth_password_problem),
        Variable(VariableKey("SecurityCtrlr", "OrganizationName"), "string", ""),
        Variable(VariableKey("SecurityCtrlr", "CertificateEntries"), "integer", "0", **ro),
        Variable(VariableKey("SecurityCtrlr", "MaxCertificateChainSize"), "integer", str(max_chain_size), **ro),
        Variable(VariableKey("SecurityCtrlr", "CertSigningWaitMinimum"), "integer", "60", unit="s", min_value=1,
                 max_value=86400),
        Variable(VariableKey("SecurityCtrlr", "CertSigningRepeatTimes"), "integer", "3", min_value=0, max_value=10),
        Variable(VariableKey("OCPPCommCtrlr", "NetworkConfigurationPriority"), "SequenceList", "0"),
        Variable(VariableKey("OCPPCommCtrlr", "NetworkProfileConnectionAttempts"), "integer", "3", min_value=1,
                 max_value=100),
        Variable(VariableKey("OCPPCommCtrlr", "ActiveNetworkProfile"), "integer", "0", **ro),
    ]


def name_of(key: VariableKey) -> str:
    """A station-wide variable's name in the config file's ``[ocpp.variables]``:
    ``Component.Variable``, or ``Component.Variable.Instance`` for a variable with an instance."""
    return ".".join(part for part in (key.component, key.variable, key.variable_instance) if part)


def station_device_model(config: "Config", max_chain_size: int = 0) -> DeviceModel:
    """Every variable of the station ``config`` describes, with its default value (the installer's
    ``ocpp.variables`` are for ``DeviceModel.set_initial``)."""
    cp, ocpp = config.charge_point, config.ocpp
    return DeviceModel(station_variables(cp.connectors, cp.vendor, cp.model, cp.serial_number,
                                         f"evcp {evcp.__version__}", socket_outlet=cp.cable == "socket")
                       + security_variables(ocpp.security_profile, cp.id, ocpp.authorization_key or "",
                                            max_chain_size))


@dataclass
class DeviceModel:
    variables: list[Variable]
    _index: dict[VariableKey, Variable] = field(default_factory=dict)
    _named: dict[str, Variable] = field(default_factory=dict)
    _initial: dict[VariableKey, str] = field(default_factory=dict)
    """The values before the CSMS changed any: the defaults and the installer's."""

    def __post_init__(self) -> None:
        self._index = {variable.key: variable for variable in self.variables}
        self._named = {name_of(v.key): v for v in self.variables
                       if v.key.evse is None and v.key.component_instance is None}
        self._initial = {v.key: v.value for v in self.variables}

    # ----------------------------------------------------------------- the installer's values

    def names(self) -> list[str]:
        """The names ``[ocpp.variables]`` may use (``name_of``)."""
        return list(self._named)

    def named(self, name: str) -> Variable | None:
        """The station-wide variable ``name`` (``name_of``), or None."""
        return self._named.get(name)

    def installer_value_problem(self, name: str, text: str) -> str | None:
        """Why the installer's ``[ocpp.variables]`` cannot give the variable ``name`` the value
        ``text``, or None: no such variable, read-only, set by another key, or a bad value."""
        if name in SET_ELSEWHERE:
            return f"set {SET_ELSEWHERE[name]} instead"
        variable = self._named.get(name)
        if variable is None:
            return "no such variable in this charging station's device model"
        if variable.mutability == "ReadOnly":
            return f"read-only, this charging station's own value ({variable.value or 'empty'})"
        return variable.check(text)

    def set_initial(self, values: Mapping[str, str]) -> None:
        """The installer's ``[ocpp.variables]`` (checked by the config; ValueError "name: problem"
        otherwise). They are the values a restart comes back to unless the CSMS changed them."""
        for name, text in values.items():
            if (problem := self.installer_value_problem(name, text)) is not None:
                raise ValueError(f"{name}: {problem}")
            self._named[name].value = text
        self._initial = {v.key: v.value for v in self.variables}

    # ----------------------------------------------------------------- lookups

    def get(self, component: str, variable: str, variable_instance: str | None = None) -> str:
        """The Actual value of a station-wide variable (KeyError if there is none)."""
        return self._index[VariableKey(component, variable, None, None, variable_instance)].value

    def flag(self, component: str, variable: str) -> bool:
        return self.get(component, variable) == "true"

    def number(self, component: str, variable: str, variable_instance: str | None = None) -> int:
        return int(self.get(component, variable, variable_instance))

    def members(self, component: str, variable: str) -> list[str]:
        text = self.get(component, variable)
        return [m for m in text.split(",") if m]

    def evse_value(self, component: str, variable: str, evse: int) -> str:
        """The Actual value of a variable of one EVSE's component (KeyError if there is none)."""
        return self._index[VariableKey(component, variable, evse)].value

    def variable(self, component: str, variable: str) -> Variable:
        """A station-wide variable itself (KeyError if there is none)."""
        return self._index[VariableKey(component, variable)]

    def set_internal(self, component: str, variable: str, value: str, evse: int | None = None) -> None:
        """The station itself sets a value (HeartbeatInterval from BootNotificationResponse, a
        device's Problem)."""
        self._index[VariableKey(component, variable, evse)].value = value

    def _find(self, component: dict, variable: dict) -> Variable | str:
        """The variable, or the GetVariableStatus that says why there is none."""
        evse = (component.get("evse") or {}).get("id")
        key = VariableKey(component.get("name", ""), variable.get("name", ""), evse,
                          component.get("instance"), variable.get("instance"))
        found = self._index.get(key)
        if found is not None:
            return found
        same_component = [k for k in self._index if (k.component, k.evse, k.component_instance)
                          == (key.component, key.evse, key.component_instance)]
        return "UnknownVariable" if same_component else "UnknownComponent"

    # ----------------------------------------------------------------- GetVariables / SetVariables

    def get_variable(self, component: dict, variable: dict, attribute_type: str | None) -> Result:
        """One GetVariableData (Part 2 B06): only the Actual attribute exists here."""
        found = self._find(component, variable)
        if isinstance(found, str):
            return Result(found)
        if (attribute_type or "Actual") != "Actual":
            return Result("NotSupportedAttributeType")
        if found.mutability == "WriteOnly":
            return Result("Rejected")
        return Result("Accepted", found.value)

    def set_variable(self, component: dict, variable: dict, value: str, attribute_type: str | None) -> Result:
        """One SetVariableData (Part 2 B05): Accepted, Rejected (read-only, bad value),
        UnknownComponent, UnknownVariable, NotSupportedAttributeType."""
        found = self._find(component, variable)
        if isinstance(found, str):
            return Result(found)
        if (attribute_type or "Actual") != "Actual":
            return Result("NotSupportedAttributeType")
        if found.mutability == "ReadOnly":
            return Result("Rejected", reason="ReadOnly")
        problem = found.check(value)
        if problem is not None:
            return Result("Rejected", reason=problem)
        found.value = value
        return Result("Accepted")

    # ----------------------------------------------------------------- reports

    def report(self, base: str) -> list[dict[str, Any]] | None:
        """ReportDataType items for GetBaseReport (Part 2 B07): FullInventory and
        ConfigurationInventory (the writable ones) and SummaryInventory (the availability
        states and the devices' Problem); None for a reportBase this station does not know."""
        if base == "FullInventory":
            chosen: Iterable[Variable] = self.variables
        elif base == "ConfigurationInventory":
            chosen = [v for v in self.variables if v.mutability != "ReadOnly"]
        elif base == "SummaryInventory":
            chosen = [v for v in self.variables if v.key.variable in ("AvailabilityState", "Problem")]
        else:
            return None
        return [_report_item(v) for v in chosen]

    # ----------------------------------------------------------------- persistence

    def saved(self) -> dict[str, str]:
        """The values worth keeping across a restart, by a stable name: the writable ones changed
        since the start (by the CSMS, or the station itself). The others come from the defaults
        and the installer's file again, which may have changed meanwhile."""
        return {_name(v.key): v.value for v in self.variables
                if v.persistent and v.mutability != "ReadOnly" and v.value != self._initial.get(v.key)}

    def restore(self, saved: dict[str, str] | None) -> list[str]:
        """Values as they were before a restart; returns what could not be restored, with why."""
        problems = []
        by_name = {_name(v.key): v for v in self.variables}
        for name, value in (saved or {}).items():
            variable = by_name.get(name)
            if variable is None or variable.mutability == "ReadOnly":
                problems.append(f"{name}: no such writable variable any more")
                continue
            if value != variable.value and (problem := variable.check(value)) is not None:
                problems.append(f"{name}: {problem} (got {value!r})")
                continue
            variable.value = value
        return problems


def _name(key: VariableKey) -> str:
    parts = [key.component, key.component_instance or "", str(key.evse or ""), key.variable, key.variable_instance or ""]
    return "/".join(parts)


def _report_item(v: Variable) -> dict[str, Any]:
    component: dict[str, Any] = {"name": v.key.component}
    if v.key.component_instance:
        component["instance"] = v.key.component_instance
    if v.key.evse is not None:
        component["evse"] = {"id": v.key.evse}
    variable: dict[str, Any] = {"name": v.key.variable}
    if v.key.variable_instance:
        variable["instance"] = v.key.variable_instance
    attribute: dict[str, Any] = {"type": "Actual", "mutability": v.mutability, "persistent": v.persistent,
                                 "constant": v.mutability == "ReadOnly"}
    if v.mutability != "WriteOnly":
        attribute["value"] = v.value
    characteristics: dict[str, Any] = {"dataType": v.data_type, "supportsMonitoring": False}
    if v.unit:
        characteristics["unit"] = v.unit
    if v.values_list:
        characteristics["valuesList"] = ",".join(v.values_list)
    if v.min_value is not None:
        characteristics["minLimit"] = v.min_value
    if v.max_value is not None:
        characteristics["maxLimit"] = v.max_value
    return {"component": component, "variable": variable, "variableAttribute": [attribute],
            "variableCharacteristics": characteristics}


def settings_from(model: DeviceModel, installer: Settings) -> Settings:
    """The core's settings when the station speaks OCPP 2.0.1: ``installer`` (what the installer's
    file and the hardware decide) with every setting of the protocol from the device model's
    variables (Part 2 Appendix "Referenced Components and Variables"), never from the OCPP 1.6
    configuration keys."""
    return replace(
        installer,
        connection_timeout_s=float(model.number("TxCtrlr", "EVConnectionTimeOut")),
        stop_on_ev_disconnect=model.flag("TxCtrlr", "StopTxOnEVSideDisconnect"),
        stop_on_invalid_id=model.flag("TxCtrlr", "StopTxOnInvalidId"),
        max_energy_on_invalid_wh=float(model.number("TxCtrlr", "MaxEnergyOnInvalidId")),
        unlock_on_ev_disconnect=model.flag("OCPPCommCtrlr", "UnlockOnEVSideDisconnect"),
        authorize_remote_start=model.flag("AuthCtrlr", "AuthorizeRemoteStart"),
        allow_offline_unknown=model.flag("AuthCtrlr", "OfflineTxForUnknownIdEnabled"),
        meter_sample_interval_s=float(model.number("SampledDataCtrlr", "TxUpdatedInterval")),
        clock_aligned_interval_s=float(model.number("AlignedDataCtrlr", "Interval")),
        end_sample_interval_s=float(model.number("SampledDataCtrlr", "TxEndedInterval")),
        end_clock_aligned_interval_s=float(model.number("AlignedDataCtrlr", "TxEndedInterval")),
        # Part 2 H01.FR.18/19: a reservation of no EVSE in particular (the core's connector 0).
        reserve_connector_zero=model.flag("ReservationCtrlr", "Enabled") and model.flag("ReservationCtrlr",
                                                                                        "NonEvseSpecific"),
        max_stack_level=model.number("SmartChargingCtrlr", "ProfileStackLevel"),
        max_schedule_periods=model.number("SmartChargingCtrlr", "PeriodsPerSchedule"),
        max_charging_profiles=model.number("SmartChargingCtrlr", "Entries", "ChargingProfiles"),
        charging_rate_units=tuple(model.members("SmartChargingCtrlr", "RateUnit")),
    )
