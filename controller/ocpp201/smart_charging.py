"""OCPP 2.0.1 smart charging (Part 2 "K. Smart Charging"): 2.0.1 shapes at the edge, limits in the core.

The profiles, their stacking and the limit the control pilot offers live in the protocol-neutral
``evcp.core.smart_charging`` (the same store and the same pilot path as OCPP 1.6). This module
translates between the two:

* purposes: ChargingStationMaxProfile is the core's charge-point maximum; TxDefaultProfile and
  TxProfile keep their names; ChargingStationExternalConstraints is never accepted from the CSMS
  (K01: that purpose is the station's own, set by an external system);
* ``chargingSchedule`` is a list in 2.0.1 (up to three, for ISO 15118 negotiation); this station
  speaks no ISO 15118, so it takes exactly one and keeps its ``id``;
* ``evseId`` is the core's connector (one connector per EVSE), evseId 0 the station;
* a TxProfile names its transaction by the 2.0.1 ``transactionId`` (a UUID string); the core
  knows the transaction running on the connector.

It also checks what 2.0.1 asks beyond the core (K01): a TxProfile needs the transactionId of a
transaction running on that EVSE, the rate unit must be in SmartChargingCtrlr.RateUnit, and a
second profile of the same purpose and stackLevel on an EVSE is refused when their validity
periods overlap (1.6 replaced it). Every refusal carries a statusInfo reasonCode.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from evcp.core import actions as act
from evcp.core import events as ev
from evcp.core import smart_charging as sc
from evcp.ocpp201.meter_values import meter_value

if TYPE_CHECKING:
    from evcp.ocpp201.device_model import DeviceModel
    from evcp.ocpp201.transactions import Transactions
    from evcp.runtime.controller import Controller

log = logging.getLogger("evcp.ocpp")

STATION_MAX = "ChargingStationMaxProfile"
EXTERNAL_CONSTRAINTS = "ChargingStationExternalConstraints"
TO_CORE = {STATION_MAX: sc.CHARGE_POINT_MAX, "TxDefaultProfile": sc.TX_DEFAULT, "TxProfile": sc.TX}
FROM_CORE = {core: name for name, core in TO_CORE.items()}
LIMIT_SOURCE = "CSO"
"""ChargingLimitSourceEnumType of every profile here: all come from the CSMS (K09 reports it)."""
CONTROLLER = "SmartChargingCtrlr"
RATE_CHANGED = "ChargingRateChanged"
"""TriggerReasonEnumType of the TransactionEvent sent when the offered limit changed."""


class Refused(Exception):
    """A request this station answers Rejected; ``status_info`` says why (StatusInfoType)."""

    def __init__(self, reason_code: str, info: str):
        super().__init__(info)
        self.reason_code = reason_code
        self.info = info

    @property
    def status_info(self) -> dict[str, str]:
        return {"reason_code": self.reason_code[:20], "additional_info": self.info[:512]}


# --- translation ------------------------------------------------------------------------------


def to_core(profile: Mapping[str, Any], core_transaction_id: int | None = None) -> dict[str, Any]:
    """A ChargingProfileType (snake_case, as the ocpp library hands it over) as the core's
    csChargingProfiles (camelCase). ``core_transaction_id`` stands for the 2.0.1 transactionId,
    which the caller resolved. Raises :class:`Refused` for what this station does not take."""
    if not isinstance(profile, Mapping):
        raise Refused("InvalidValue", f"chargingProfile: must be an object (got {type(profile).__name__})")
    purpose = profile.get("charging_profile_purpose")
    if purpose == EXTERNAL_CONSTRAINTS:
        raise Refused("InvalidValue", "ChargingStationExternalConstraints profiles are not set by the CSMS (K01)")
    if purpose not in TO_CORE:
        raise Refused("InvalidValue", f"chargingProfilePurpose: unknown (got {purpose!r})")
    schedules = profile.get("charging_schedule")
    if not isinstance(schedules, list) or not schedules:
        raise Refused("InvalidSchedule", "chargingSchedule: a list of one schedule is needed")
    if len(schedules) > 1:
        raise Refused("UnsupportedParam", f"chargingSchedule: {len(schedules)} schedules; more than one is "
                                          "for ISO 15118 schedule negotiation, which this station does not do")
    raw = schedules[0]
    if not isinstance(raw, Mapping):
        raise Refused("InvalidSchedule", "chargingSchedule[0]: must be an object")
    periods = raw.get("charging_schedule_period")
    if not isinstance(periods, list):
        raise Refused("InvalidSchedule", "chargingSchedule[0].chargingSchedulePeriod: must be a list")
    core_periods = []
    for i, period in enumerate(periods):
        if not isinstance(period, Mapping):
            raise Refused("InvalidSchedule", f"chargingSchedule[0].chargingSchedulePeriod[{i}]: must be an object")
        if period.get("phase_to_use") is not None:
            # K01: phaseToUse needs ACPhaseSwitchingSupported, which this station does not have.
            raise Refused("UnsupportedParam", f"chargingSchedule[0].chargingSchedulePeriod[{i}].phaseToUse: "
                                              "this station cannot switch phases")
        core_periods.append(_present(startPeriod=period.get("start_period"), limit=period.get("limit"),
                                     numberPhases=period.get("number_phases")))
    schedule = _present(id=raw.get("id"), startSchedule=raw.get("start_schedule"), duration=raw.get("duration"),
                        chargingRateUnit=raw.get("charging_rate_unit"), chargingSchedulePeriod=core_periods,
                        minChargingRate=raw.get("min_charging_rate"))
    # salesTariff is ISO 15118 information for the EV; it sets no limit and is not kept.
    return _present(chargingProfileId=profile.get("id"), stackLevel=profile.get("stack_level"),
                    chargingProfilePurpose=TO_CORE[purpose], chargingProfileKind=profile.get("charging_profile_kind"),
                    recurrencyKind=profile.get("recurrency_kind"), validFrom=profile.get("valid_from"),
                    validTo=profile.get("valid_to"), transactionId=core_transaction_id, chargingSchedule=schedule)


def from_core(profile: sc.ChargingProfile, transaction_id: str | None = None) -> dict[str, Any]:
    """An installed profile as a ChargingProfileType (camelCase), for ReportChargingProfiles;
    ``transaction_id`` is the 2.0.1 id of the transaction a TxProfile belongs to."""
    core = profile.to_ocpp()
    schedule = dict(core["chargingSchedule"])
    schedule["id"] = profile.schedule.id if profile.schedule.id is not None else profile.id
    out: dict[str, Any] = {"id": profile.id, "stackLevel": profile.stack_level,
                           "chargingProfilePurpose": FROM_CORE[profile.purpose],
                           "chargingProfileKind": profile.kind}
    for name in ("recurrencyKind", "validFrom", "validTo"):
        if name in core:
            out[name] = core[name]
    if profile.purpose == sc.TX and transaction_id is not None:
        out["transactionId"] = transaction_id
    out["chargingSchedule"] = [schedule]
    return out


def composite_to_ocpp(schedule: sc.CompositeSchedule, evse_id: int) -> dict[str, Any]:
    """GetCompositeScheduleResponse.schedule (CompositeScheduleType, camelCase)."""
    core = schedule.to_ocpp()
    return {"evseId": evse_id, "duration": core["duration"], "scheduleStart": core["startSchedule"],
            "chargingRateUnit": core["chargingRateUnit"], "chargingSchedulePeriod": core["chargingSchedulePeriod"]}


def matches(profile: sc.ChargingProfile, evse_id: int | None, criterion: Mapping[str, Any]) -> bool:
    """GetChargingProfiles (K09): evseId absent = every EVSE, 0 = the station's own profiles;
    every criterion given must hold."""
    if evse_id is not None and profile.connector != evse_id:
        return False
    purpose = criterion.get("charging_profile_purpose")
    if purpose is not None and TO_CORE.get(purpose) != profile.purpose:
        return False
    if criterion.get("stack_level") is not None and criterion["stack_level"] != profile.stack_level:
        return False
    if criterion.get("charging_profile_id") and profile.id not in criterion["charging_profile_id"]:
        return False
    sources = criterion.get("charging_limit_source")
    return not sources or LIMIT_SOURCE in sources


def report_parts(request_id: int, profiles: Iterable[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """ReportChargingProfilesRequests (K09), one per EVSE (the message has one evseId), ``tbc``
    true on all but the last."""
    by_evse: dict[int, list[dict[str, Any]]] = {}
    for evse, profile in profiles:
        by_evse.setdefault(evse, []).append(profile)
    parts = [{"requestId": request_id, "chargingLimitSource": LIMIT_SOURCE, "evseId": evse,
              "chargingProfile": found} for evse, found in sorted(by_evse.items())]
    for i, part in enumerate(parts):
        part["tbc"] = i < len(parts) - 1
    return parts


def significant(before: float | None, after: float | None, significance_pct: float) -> bool:
    """SmartChargingCtrlr.LimitChangeSignificance: a change of the limit smaller than this
    percentage of the one before need not be reported; starting or stopping the offer always is."""
    if before == after:
        return False
    if before is None or after is None or before == 0:
        return True
    return abs(after - before) >= before * significance_pct / 100


def overlaps(a: sc.ChargingProfile, b: sc.ChargingProfile) -> bool:
    """Whether the validity periods [validFrom, validTo) of two profiles share an instant."""
    a_from, a_to = a.valid_from or -math.inf, a.valid_to or math.inf
    b_from, b_to = b.valid_from or -math.inf, b.valid_to or math.inf
    return a_from < b_to and b_from < a_to


def _status(actions: list) -> str:
    for action in actions:
        if isinstance(action, act.Answer):
            return action.status
    raise RuntimeError("the core gave no answer")


def _present(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


# --- the use cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: str
    status_info: dict[str, str] | None = None


class SmartCharging:
    """K01, K05, K08, K09, K10 for the 2.0.1 adapter: checked here, installed through the core."""

    def __init__(self, controller: "Controller", transactions: "Transactions", device_model: "DeviceModel"):
        self.controller = controller
        self.transactions = transactions
        self.device_model = device_model
        self._reported_offer: dict[int, float | None] = {}

    @property
    def _evses(self) -> int:
        return len(self.controller.station.connectors)

    def set_profile(self, evse_id: int, profile: Mapping[str, Any]) -> Answer:
        """SetChargingProfile (K01)."""
        try:
            core_payload = self._checked(evse_id, profile)
        except Refused as refused:
            log.info("SetChargingProfile on EVSE %d refused: %s", evse_id, refused.info)
            return Answer("Rejected", refused.status_info)
        actions = self.controller.dispatch(ev.ChargingProfileRequested(evse_id, core_payload,
                                                                       replace_same_stack=False))
        status = _status(actions)
        if status == "Accepted":
            return Answer("Accepted")
        why = next((a.text for a in actions if isinstance(a, act.Notice)), "refused by the charging profile store")
        return Answer("Rejected", Refused("InvalidProfile", why).status_info)

    def start_profile(self, profile: Mapping[str, Any]) -> dict[str, Any]:
        """The chargingProfile of a RequestStartTransaction (K05, F01) for the core: a TxProfile
        without transactionId (the transaction does not exist yet). Raises :class:`Refused`."""
        if not isinstance(profile, Mapping) or profile.get("charging_profile_purpose") != "TxProfile":
            raise Refused("InvalidProfile", "the chargingProfile of RequestStartTransaction must be a TxProfile")
        if profile.get("transaction_id") is not None:
            raise Refused("InvalidProfile", "the chargingProfile of RequestStartTransaction has no transactionId")
        core_payload = to_core(profile)
        self._check_units(core_payload)
        try:
            sc.profile_from_ocpp(1, core_payload)
        except sc.ProfileError as error:
            raise Refused("InvalidSchedule", str(error)) from None
        return core_payload

    def clear(self, profile_id: int | None, criteria: Mapping[str, Any] | None) -> Answer:
        """ClearChargingProfile (K10): by id, or every profile matching all criteria given."""
        criteria = criteria or {}
        purpose = criteria.get("charging_profile_purpose")
        if profile_id is None and purpose == EXTERNAL_CONSTRAINTS:
            return Answer("Unknown")  # the CSMS set none and may clear none (K10)
        evse = criteria.get("evse_id")
        status = _status(self.controller.dispatch(ev.ClearChargingProfileRequested(
            profile_id, evse if profile_id is None else None,
            TO_CORE.get(purpose) if profile_id is None and purpose else None,
            criteria.get("stack_level") if profile_id is None else None)))
        return Answer(status)

    def get_profiles(self, request_id: int, evse_id: int | None,
                     criterion: Mapping[str, Any] | None) -> tuple[Answer, list[dict[str, Any]]]:
        """GetChargingProfiles (K09): the answer, and the ReportChargingProfiles to send after it."""
        criterion = criterion or {}
        found = [(p.connector, from_core(p, self._transaction_of(p)))
                 for p in self.controller.station.charging.profiles if matches(p, evse_id, criterion)]
        if not found:
            return Answer("NoProfiles"), []
        return Answer("Accepted"), report_parts(request_id, found)

    def composite(self, duration: int, unit: str | None, evse_id: int) -> tuple[Answer, dict[str, Any] | None]:
        """GetCompositeSchedule (K08): what the station will allow on the EVSE (0: the whole
        station) from now for ``duration`` seconds."""
        if not 0 <= evse_id <= self._evses:
            return Answer("Rejected", Refused("UnknownEvse", f"evseId: no EVSE {evse_id}").status_info), None
        if unit is not None and unit not in self._units():
            return Answer("Rejected", Refused("UnsupportedRateUnit", f"chargingRateUnit {unit} is not in "
                                              "SmartChargingCtrlr.RateUnit").status_info), None
        schedule = self.controller.composite_schedule(evse_id, duration, unit)
        if schedule is None:
            return Answer("Rejected", Refused("InvalidValue", "no composite schedule").status_info), None
        return Answer("Accepted"), composite_to_ocpp(schedule, evse_id)

    def offer_changed(self, evse: int, amps: float | None, at: float, online: bool) -> None:
        """The pilot's offer changed: a TransactionEvent Updated, triggerReason ChargingRateChanged,
        when a started transaction runs and the change is significant (LimitChangeSignificance)."""
        tx = self.transactions.by_evse.get(evse)
        before = self._reported_offer.get(evse)
        if tx is None or not tx.started or tx.local_id is None:
            self._reported_offer[evse] = amps  # no transaction charging: nothing to report
            return
        pct = float(self.device_model.get(CONTROLLER, "LimitChangeSignificance"))
        if not significant(before, amps, pct):
            return
        self._reported_offer[evse] = amps
        report = self.controller.meter_report(evse, "Other")
        if report is None:
            return
        measurands = self.device_model.members("SampledDataCtrlr", "TxUpdatedMeasurands")
        sample = meter_value(report, ["Current.Offered"] + [m for m in measurands if m != "Current.Offered"],
                             amps, context="Other")
        self.transactions.meter_values(evse, RATE_CHANGED, sample, at, online)

    # --- inside ---

    def _checked(self, evse_id: int, profile: Mapping[str, Any]) -> dict[str, Any]:
        if not 0 <= evse_id <= self._evses:
            raise Refused("UnknownEvse", f"evseId: no EVSE {evse_id} (this station has {self._evses})")
        purpose = profile.get("charging_profile_purpose") if isinstance(profile, Mapping) else None
        core_transaction_id = None
        if purpose == STATION_MAX and evse_id != 0:
            raise Refused("InvalidValue", "a ChargingStationMaxProfile is set on evseId 0 only")
        if purpose == "TxProfile":
            core_transaction_id = self._running_transaction(evse_id, profile.get("transaction_id"))
        elif isinstance(profile, Mapping) and profile.get("transaction_id") is not None:
            raise Refused("InvalidValue", f"transactionId: only a TxProfile names a transaction (this is {purpose})")
        core_payload = to_core(profile, core_transaction_id)
        self._check_units(core_payload)
        try:
            new = sc.profile_from_ocpp(evse_id, core_payload)
        except sc.ProfileError as error:
            raise Refused("InvalidSchedule", str(error)) from None
        limit = self.device_model.number(CONTROLLER, "ProfileStackLevel")
        if new.stack_level > limit:
            raise Refused("InvalidStackLevel", f"stackLevel {new.stack_level} is above ProfileStackLevel {limit}")
        for old in self.controller.station.charging.profiles:
            if (old.id != new.id and (old.connector, old.purpose, old.stack_level)
                    == (new.connector, new.purpose, new.stack_level) and overlaps(old, new)):
                raise Refused("DuplicateProfile", f"profile {old.id} has the same purpose and stackLevel on "
                                                  f"EVSE {evse_id} with an overlapping validity (K01)")
        return core_payload

    def _running_transaction(self, evse_id: int, transaction_id: str | None) -> int | None:
        """The core's id of the transaction a TxProfile names; it must run on ``evse_id``."""
        if evse_id == 0:
            raise Refused("InvalidValue", "a TxProfile is set on an EVSE, not on evseId 0")
        if transaction_id is None:
            raise Refused("TxNotFound", "a TxProfile needs the transactionId of the running transaction")
        tx = self.transactions.find(transaction_id)
        core_tx = self.controller.station.connectors[evse_id].transaction
        if tx is None or tx.evse != evse_id or tx.local_id is None or core_tx is None \
                or core_tx.local_id != tx.local_id:
            raise Refused("TxNotFound", f"transactionId {transaction_id} is not a transaction charging on "
                                        f"EVSE {evse_id}")
        return core_tx.transaction_id

    def _units(self) -> list[str]:
        return self.device_model.members(CONTROLLER, "RateUnit")

    def _check_units(self, core_payload: Mapping[str, Any]) -> None:
        unit = core_payload.get("chargingSchedule", {}).get("chargingRateUnit")
        if unit is not None and unit not in self._units():
            raise Refused("UnsupportedRateUnit", f"chargingRateUnit {unit} is not in SmartChargingCtrlr.RateUnit "
                                                 f"({','.join(self._units())})")

    def _transaction_of(self, profile: sc.ChargingProfile) -> str | None:
        if profile.purpose != sc.TX:
            return None
        tx = self.transactions.by_evse.get(profile.connector)
        return tx.transaction_id if tx is not None else None
