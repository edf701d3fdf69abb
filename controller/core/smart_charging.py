"""Smart Charging (OCPP 1.6 §3.13, OCPP 2.0.1 Part 2 K): the charging profiles a charger holds
and the limit they impose.

Pure: time comes in as POSIX seconds, payloads as plain dicts; nothing here reads a clock, a file
or a socket. The OCPP 1.6 adapter turns SetChargingProfile (§5.16), ClearChargingProfile (§5.5)
and GetCompositeSchedule (§5.7) into calls on :class:`ChargingProfiles`; the 2.0.1 adapter
(``evcp.ocpp201.smart_charging``) does the same with their 2.0.1 forms (K01, K10, K08), in 1.6's
words: ChargingStationMaxProfile is ``CHARGE_POINT_MAX`` and an evseId the connector of that
EVSE, evseId 0 being connector 0, the charger as a whole. The connector logic asks for ``limit_a``
(the current the control pilot may offer) and ``next_change`` (when to ask again).

How a limit is found at one instant (§3.13.2 stacking, §3.13.3 combining purposes):

* within one purpose, the valid profile with the highest stackLevel whose schedule has a period
  at that instant decides; where it has none (not started yet, duration over) the next lower
  stack level decides. A connector's own TxDefaultProfile wins over one of connector 0 (for
  every connector) of the same stack level;
* a TxProfile of the running transaction overrides the TxDefaultProfiles;
* the result is the lowest of that, the ChargePointMaxProfile and the hardware maximum.

Limits are compared as amperes per phase, the quantity the control pilot offers.
"""

from __future__ import annotations

import math
from decimal import Decimal
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping

from evcp.timestamps import parse_timestamp

CHARGE_POINT_MAX = "ChargePointMaxProfile"
"""The purpose that caps the whole charger, set on connector 0 only: OCPP 1.6 ChargePointMaxProfile,
2.0.1 ChargingStationMaxProfile on evseId 0."""
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
PURPOSES = (CHARGE_POINT_MAX, TX_DEFAULT, TX)
ABSOLUTE, RECURRING, RELATIVE = "Absolute", "Recurring", "Relative"
KINDS = (ABSOLUTE, RECURRING, RELATIVE)
RECURRENCE_S = {"Daily": 24 * 3600, "Weekly": 7 * 24 * 3600}
UNITS = ("A", "W")
_UNIT_OF_ALLOWED = {"Current": "A", "Power": "W", "A": "A", "W": "W"}
"""ChargingScheduleAllowedChargingRateUnit (§9.4) names the units Current and Power."""

DEFAULT_PHASES = 3
"""§7.14 ChargingSchedulePeriod.numberPhases: three phases are assumed unless another number is given."""

LOOKAHEAD_S = 8 * 24 * 3600
"""How far ``next_change`` looks: past one Weekly recurrence, so any repeating step is seen."""


class ProfileError(ValueError):
    """A charging profile that cannot be accepted; the message names the field and the reason."""


@dataclass(frozen=True)
class SchedulePeriod:
    """One step of a schedule (§7.14): from ``start_s`` after the schedule start, at most ``limit``."""

    start_s: int
    limit: float
    number_phases: int | None = None


@dataclass(frozen=True)
class ChargingSchedule:
    """§7.13 ChargingSchedule. ``start`` is POSIX seconds (None for Relative profiles)."""

    unit: str
    periods: tuple[SchedulePeriod, ...]
    duration_s: int | None = None
    start: float | None = None
    min_rate: float | None = None
    id: int | None = None
    """The schedule's own id where the protocol gives one (OCPP 2.0.1 ChargingScheduleType.id)."""


@dataclass(frozen=True)
class ChargingProfile:
    """§7.8 ChargingProfile, with the connector it was set on (SetChargingProfile.req connectorId)."""

    id: int
    connector: int
    stack_level: int
    purpose: str
    kind: str
    recurrency: str | None
    valid_from: float | None
    valid_to: float | None
    transaction_id: int | None
    schedule: ChargingSchedule

    def to_ocpp(self) -> dict:
        """The csChargingProfiles object of SetChargingProfile.req, camelCase, absent fields left out."""
        schedule: dict[str, Any] = {}
        if self.schedule.id is not None:
            schedule["id"] = self.schedule.id
        if self.schedule.duration_s is not None:
            schedule["duration"] = self.schedule.duration_s
        if self.schedule.start is not None:
            schedule["startSchedule"] = format_time(self.schedule.start)
        schedule["chargingRateUnit"] = self.schedule.unit
        schedule["chargingSchedulePeriod"] = [_period_to_ocpp(p) for p in self.schedule.periods]
        if self.schedule.min_rate is not None:
            schedule["minChargingRate"] = self.schedule.min_rate
        out: dict[str, Any] = {"chargingProfileId": self.id}
        if self.transaction_id is not None:
            out["transactionId"] = self.transaction_id
        out.update(stackLevel=self.stack_level, chargingProfilePurpose=self.purpose,
                   chargingProfileKind=self.kind)
        if self.recurrency is not None:
            out["recurrencyKind"] = self.recurrency
        if self.valid_from is not None:
            out["validFrom"] = format_time(self.valid_from)
        if self.valid_to is not None:
            out["validTo"] = format_time(self.valid_to)
        out["chargingSchedule"] = schedule
        return out


@dataclass(frozen=True)
class Transaction:
    """The transaction running on a connector: Relative profiles start at ``started_at``."""

    transaction_id: int | None
    started_at: float


@dataclass(frozen=True)
class Limits:
    """The charger's physical facts and the profile memory it offers (§9.4 SmartCharging keys)."""

    connectors: int
    max_current_a: float
    phases: int
    voltage_v: float
    """Line to neutral, e.g. 230."""
    max_stack_level: int = 10
    """ChargeProfileMaxStackLevel."""
    max_periods: int = 24
    """ChargingScheduleMaxPeriods."""
    max_profiles: int = 20
    """MaxChargingProfilesInstalled."""
    allowed_units: tuple[str, ...] = ("Current", "Power")
    """ChargingScheduleAllowedChargingRateUnit."""

    def __post_init__(self) -> None:
        if self.phases not in (1, 2, 3):
            raise ValueError(f"phases: must be 1, 2 or 3 (got {self.phases})")
        if self.voltage_v <= 0 or self.max_current_a <= 0:
            raise ValueError("voltage_v and max_current_a must be positive")
        unknown = [u for u in self.allowed_units if u not in _UNIT_OF_ALLOWED]
        if unknown:
            raise ValueError(f"allowed_units: unknown unit {unknown[0]!r} (use Current or Power)")


@dataclass(frozen=True)
class CompositeSchedule:
    """GetCompositeSchedule.conf's schedule (§5.7): what the charger will allow over a window."""

    connector: int
    start: float
    duration_s: int
    unit: str
    periods: tuple[SchedulePeriod, ...]

    def period_at(self, t: float) -> SchedulePeriod:
        """The period in force at POSIX time ``t`` (the first one before the window starts)."""
        current = self.periods[0]
        for period in self.periods:
            if self.start + period.start_s <= t:
                current = period
        return current

    def to_ocpp(self) -> dict:
        """The chargingSchedule object of GetCompositeSchedule.conf, camelCase."""
        return {
            "duration": self.duration_s,
            "startSchedule": format_time(self.start),
            "chargingRateUnit": self.unit,
            "chargingSchedulePeriod": [_period_to_ocpp(p) for p in self.periods],
        }


# --- reading profiles -------------------------------------------------------------------------


def profile_from_ocpp(connector: int, payload: Mapping[str, Any]) -> ChargingProfile:
    """Read csChargingProfiles (snake_case as the ocpp library hands it over, or camelCase).

    Raises :class:`ProfileError` naming the field when the profile breaks §7.8/§7.13/§7.14.
    """
    if not isinstance(payload, Mapping):
        raise ProfileError(f"csChargingProfiles: must be an object (got {type(payload).__name__})")
    if not _is_int(connector) or connector < 0:
        raise ProfileError(f"connectorId: must be an integer >= 0 (got {connector!r})")
    raw_schedule = _field(payload, "charging_schedule", "chargingSchedule", required=True)
    if not isinstance(raw_schedule, Mapping):
        raise ProfileError("chargingSchedule: must be an object")
    raw_periods = _field(raw_schedule, "charging_schedule_period", "chargingSchedule.chargingSchedulePeriod",
                         required=True)
    if not isinstance(raw_periods, (list, tuple)):
        raise ProfileError("chargingSchedule.chargingSchedulePeriod: must be a list")
    periods = []
    for i, raw in enumerate(raw_periods):
        where = f"chargingSchedule.chargingSchedulePeriod[{i}]"
        if not isinstance(raw, Mapping):
            raise ProfileError(f"{where}: must be an object")
        periods.append(SchedulePeriod(
            start_s=_int(raw, "start_period", f"{where}.startPeriod", required=True),
            limit=_number(raw, "limit", f"{where}.limit", required=True),
            number_phases=_int(raw, "number_phases", f"{where}.numberPhases"),
        ))
    schedule = ChargingSchedule(
        unit=_choice(raw_schedule, "charging_rate_unit", "chargingSchedule.chargingRateUnit", UNITS, required=True),
        periods=tuple(periods),
        duration_s=_int(raw_schedule, "duration", "chargingSchedule.duration"),
        start=_time(raw_schedule, "start_schedule", "chargingSchedule.startSchedule"),
        min_rate=_number(raw_schedule, "min_charging_rate", "chargingSchedule.minChargingRate"),
        id=_int(raw_schedule, "id", "chargingSchedule.id"),
    )
    profile = ChargingProfile(
        id=_int(payload, "charging_profile_id", "chargingProfileId", required=True),
        connector=connector,
        stack_level=_int(payload, "stack_level", "stackLevel", required=True),
        purpose=_choice(payload, "charging_profile_purpose", "chargingProfilePurpose", PURPOSES, required=True),
        kind=_choice(payload, "charging_profile_kind", "chargingProfileKind", KINDS, required=True),
        recurrency=_choice(payload, "recurrency_kind", "recurrencyKind", tuple(RECURRENCE_S)),
        valid_from=_time(payload, "valid_from", "validFrom"),
        valid_to=_time(payload, "valid_to", "validTo"),
        transaction_id=_int(payload, "transaction_id", "transactionId"),
        schedule=schedule,
    )
    check_profile(profile)
    return profile


def check_profile(profile: ChargingProfile) -> None:
    """Raise :class:`ProfileError` if the profile contradicts itself (charger limits aside)."""
    if profile.stack_level < 0:
        raise ProfileError(f"stackLevel: must be >= 0 (got {profile.stack_level})")
    schedule = profile.schedule
    if profile.kind in (ABSOLUTE, RECURRING) and schedule.start is None:
        # §7.9 ChargingProfileKindType: Absolute and Recurring schedules count from startSchedule.
        raise ProfileError(f"chargingSchedule.startSchedule: required for a {profile.kind} profile")
    if profile.kind == RECURRING and profile.recurrency not in RECURRENCE_S:
        raise ProfileError("recurrencyKind: a Recurring profile needs Daily or Weekly")
    if profile.valid_from is not None and profile.valid_to is not None and profile.valid_to <= profile.valid_from:
        raise ProfileError("validTo: must be later than validFrom")
    if schedule.unit not in UNITS:
        raise ProfileError(f"chargingSchedule.chargingRateUnit: must be A or W (got {schedule.unit!r})")
    if schedule.duration_s is not None and schedule.duration_s < 0:
        raise ProfileError(f"chargingSchedule.duration: must be >= 0 (got {schedule.duration_s})")
    if schedule.min_rate is not None and schedule.min_rate < 0:
        raise ProfileError(f"chargingSchedule.minChargingRate: must be >= 0 (got {schedule.min_rate})")
    if not schedule.periods:
        raise ProfileError("chargingSchedule.chargingSchedulePeriod: at least one period is needed")
    previous: int | None = None
    for i, period in enumerate(schedule.periods):
        where = f"chargingSchedule.chargingSchedulePeriod[{i}]"
        # §7.14: startPeriod counts from the start of the schedule and ends the period before, so
        # the first period starts at 0 and each later one after its predecessor.
        if previous is None and period.start_s != 0:
            raise ProfileError(f"{where}.startPeriod: the first period must start at 0 (got {period.start_s})")
        if previous is not None and period.start_s <= previous:
            raise ProfileError(f"{where}.startPeriod: must be later than the period before "
                               f"(got {period.start_s} after {previous})")
        if not math.isfinite(period.limit) or period.limit < 0:
            raise ProfileError(f"{where}.limit: must be >= 0 (got {period.limit})")
        if period.number_phases is not None and period.number_phases not in (1, 2, 3):
            raise ProfileError(f"{where}.numberPhases: must be 1, 2 or 3 (got {period.number_phases})")
        previous = period.start_s


# --- the store --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    """What one source allows at one instant, in amperes per phase and as it was written."""

    amps: float
    phases: int
    number_phases: int | None
    """The numberPhases to report: None when neither profile nor charger says anything but 3."""
    unit: str | None
    limit: float
    rank: int
    """Tie-break between equal limits: 0 transaction layer, 1 ChargePointMaxProfile, 2 hardware."""


class ChargingProfiles:
    """The installed charging profiles of one charge point and the limits they give."""

    def __init__(self, limits: Limits, saved: Iterable[Mapping[str, Any]] | None = None):
        self.limits = limits
        self._profiles: list[ChargingProfile] = []
        self.dropped: list[str] = []
        """Saved entries that could not be restored, each with the reason (for the log)."""
        for i, entry in enumerate(saved or ()):
            try:
                connector = _field(entry, "connector_id", "connectorId", required=True)
                payload = _field(entry, "cs_charging_profiles", "csChargingProfiles", required=True)
                profile = profile_from_ocpp(connector, payload)
                # A saved list is the result of earlier installs: only a repeated id replaces.
                problem = self._beyond_limits(profile, replacing=self._replaced_by(profile, same_stack=False))
            except (ProfileError, TypeError, AttributeError) as exc:
                problem = str(exc)
            if problem:
                self.dropped.append(f"saved profile {i}: {problem}")
            else:
                self._install(profile, same_stack=False)

    @property
    def profiles(self) -> tuple[ChargingProfile, ...]:
        """The installed profiles, oldest first."""
        return tuple(self._profiles)

    def set(self, profile: ChargingProfile, transactions: Mapping[int, Transaction] | None = None,
            replace_same_stack: bool = True) -> tuple[bool, str]:
        """SetChargingProfile (§5.16): install ``profile``; ``(True, "")`` or ``(False, why)``.

        A profile with the same id is replaced, and with ``replace_same_stack`` (OCPP 1.6 §5.16)
        also one of the same stackLevel and purpose on the same connector; without it (OCPP
        2.0.1 K01, where the adapter refuses such a profile first) both stay. A TxProfile is
        bound to the transaction running on its connector.
        """
        transactions = transactions or {}
        try:
            check_profile(profile)
        except ProfileError as exc:
            return False, str(exc)
        if not 0 <= profile.connector <= self.limits.connectors:
            return False, f"connectorId: no connector {profile.connector} (this charger has {self.limits.connectors})"
        if profile.purpose == CHARGE_POINT_MAX and profile.connector != 0:
            # §3.13.1: a ChargePointMaxProfile is set on connectorId 0 only.
            return False, "ChargePointMaxProfile can only be set on connectorId 0"
        if profile.purpose == TX:
            if profile.connector == 0:
                return False, "a TxProfile needs a connectorId > 0"
            running = transactions.get(profile.connector)
            # §5.16 / OCTT TC_058_1: no TxProfile without a running transaction.
            if running is None:
                return False, f"a TxProfile needs a running transaction on connector {profile.connector}"
            # §5.16 / OCTT TC_058_2: the transactionId must be the running one's.
            if profile.transaction_id is not None and profile.transaction_id != running.transaction_id:
                return False, (f"transactionId {profile.transaction_id} is not the transaction running "
                               f"on connector {profile.connector} ({running.transaction_id})")
            profile = replace(profile, transaction_id=running.transaction_id)
        problem = self._beyond_limits(profile, replacing=self._replaced_by(profile, replace_same_stack))
        if problem:
            return False, problem
        self._install(profile, replace_same_stack)
        return True, ""

    def clear(self, *, profile_id: int | None = None, connector: int | None = None,
              purpose: str | None = None, stack_level: int | None = None) -> bool:
        """ClearChargingProfile (§5.5): True (Accepted) when something was removed, else False (Unknown).

        An id names one profile and the other criteria are then not looked at; otherwise every
        profile matching all given criteria goes, and with no criteria at all every profile goes.
        """
        if profile_id is not None:
            doomed = [p for p in self._profiles if p.id == profile_id]
        else:
            doomed = [p for p in self._profiles
                      if (connector is None or p.connector == connector)
                      and (purpose is None or p.purpose == purpose)
                      and (stack_level is None or p.stack_level == stack_level)]
        self._profiles = [p for p in self._profiles if p not in doomed]
        return bool(doomed)

    def transaction_ended(self, connector: int) -> None:
        """Drop the connector's TxProfiles: §3.13.1, a TxProfile lives as long as its transaction."""
        self._profiles = [p for p in self._profiles if not (p.purpose == TX and p.connector == connector)]

    def limit_a(self, connector: int, now: float,
                transactions: Mapping[int, Transaction] | None = None) -> float:
        """Amperes per phase the pilot may offer at ``now``: never above ``max_current_a``,
        rounded down to 0.1 A."""
        step = self._decide(connector, now, transactions or {}, idle_anchor=now)
        return _tenths(step.amps)

    def charge_point_limit_a(self, now: float) -> float | None:
        """Amperes per phase the ChargePointMaxProfile allows the whole charge point at ``now``
        (§3.13.1: it limits the charge point, not each connector), or None when none applies."""
        ordered = sorted((p for p in self._profiles if p.purpose == CHARGE_POINT_MAX),
                         key=lambda p: -p.stack_level)
        for profile in ordered:
            period = _period_at(profile, now, now)
            if period is not None:
                return _tenths(self._step(profile, period, 1).amps)
        return None

    def next_change(self, connector: int, now: float,
                    transactions: Mapping[int, Transaction] | None = None) -> float | None:
        """The first POSIX time after ``now`` at which ``limit_a`` changes.

        When no change comes within :data:`LOOKAHEAD_S` but some profile still starts, steps or
        ends later, the end of that look-ahead is returned: ask again then. None: it never changes.
        """
        transactions = transactions or {}
        current = self.limit_a(connector, now, transactions)
        horizon = now + LOOKAHEAD_S
        sources = self._sources(connector, transactions, idle_anchor=None)
        times = sorted({t for profile, anchor in sources for t in _boundaries(profile, anchor, now, horizon)
                        if now < t <= horizon})
        for t in times:
            if self.limit_a(connector, t, transactions) != current:
                return t
        if any(_has_boundary_after(profile, anchor, horizon) for profile, anchor in sources):
            return horizon
        return None

    def composite(self, connector: int, start: float, duration_s: int, unit: str | None = None,
                  transactions: Mapping[int, Transaction] | None = None) -> CompositeSchedule:
        """GetCompositeSchedule (§5.7): the limits over ``[start, start + duration_s)``.

        ``unit`` None reports in the unit of the first profile that applies (A when none does).
        Connector 0 gives the charge point's own limit: ChargePointMaxProfile and hardware only.
        """
        if not 0 <= connector <= self.limits.connectors:
            raise ValueError(f"connectorId: no connector {connector} (this charger has {self.limits.connectors})")
        if not _is_int(duration_s) or duration_s < 0:
            raise ValueError(f"duration: must be an integer >= 0 (got {duration_s!r})")
        if unit is not None and unit not in UNITS:
            raise ValueError(f"chargingRateUnit: must be A or W (got {unit!r})")
        transactions = transactions or {}
        end = start + duration_s
        sources = self._sources(connector, transactions, idle_anchor=start)
        times = sorted({start} | {t for profile, anchor in sources for t in _boundaries(profile, anchor, start, end)
                                  if start < t < end})
        steps = [(t, self._decide(connector, t, transactions, idle_anchor=start)) for t in times]
        if unit is None:
            unit = next((s.unit for _, s in steps if s.unit is not None), "A")
        periods: list[SchedulePeriod] = []
        for t, step in steps:
            period = SchedulePeriod(round(t - start), self._in_unit(step, unit), step.number_phases)
            if periods and periods[-1].start_s == period.start_s:
                periods.pop()  # two boundaries within the same second: the later one holds
            if periods and (periods[-1].limit, periods[-1].number_phases) == (period.limit, period.number_phases):
                continue
            periods.append(period)
        return CompositeSchedule(connector, start, duration_s, unit, tuple(periods))

    def to_saved(self) -> list[dict]:
        """JSON-able copy of every profile, in SetChargingProfile.req shape, for ``saved=``."""
        return [{"connectorId": p.connector, "csChargingProfiles": p.to_ocpp()} for p in self._profiles]

    # --- inside ---

    def _replaced_by(self, profile: ChargingProfile, same_stack: bool = True) -> list[ChargingProfile]:
        # §5.16: same chargingProfileId, or same stackLevel/purpose (on the same connector), replaces.
        return [p for p in self._profiles
                if p.id == profile.id
                or (same_stack and (p.stack_level, p.purpose, p.connector)
                    == (profile.stack_level, profile.purpose, profile.connector))]

    def _install(self, profile: ChargingProfile, same_stack: bool = True) -> None:
        replaced = self._replaced_by(profile, same_stack)
        self._profiles = [p for p in self._profiles if p not in replaced] + [profile]

    def _beyond_limits(self, profile: ChargingProfile, replacing: list[ChargingProfile]) -> str:
        limits = self.limits
        if profile.stack_level > limits.max_stack_level:
            return f"stackLevel: {profile.stack_level} is above ChargeProfileMaxStackLevel {limits.max_stack_level}"
        if len(profile.schedule.periods) > limits.max_periods:
            return (f"chargingSchedule.chargingSchedulePeriod: {len(profile.schedule.periods)} periods, "
                    f"ChargingScheduleMaxPeriods is {limits.max_periods}")
        allowed = {_UNIT_OF_ALLOWED[u] for u in limits.allowed_units}
        if profile.schedule.unit not in allowed:
            return (f"chargingSchedule.chargingRateUnit: {profile.schedule.unit} is not allowed "
                    f"(ChargingScheduleAllowedChargingRateUnit: {','.join(limits.allowed_units)})")
        if len(self._profiles) - len(replacing) + 1 > limits.max_profiles:
            return f"MaxChargingProfilesInstalled ({limits.max_profiles}) reached"
        return ""

    def _sources(self, connector: int, transactions: Mapping[int, Transaction],
                 idle_anchor: float | None) -> list[tuple[ChargingProfile, float | None]]:
        """Every profile that can bear on ``connector``, with the start of its Relative schedule."""
        running = transactions.get(connector) if connector > 0 else None
        tx_anchor = running.started_at if running is not None else idle_anchor
        out: list[tuple[ChargingProfile, float | None]] = []
        for p in self._profiles:
            if p.purpose == CHARGE_POINT_MAX:
                # It belongs to no transaction: a Relative one starts "now" (§7.9 leaves the start
                # point to the charge point).
                out.append((p, idle_anchor))
            elif connector == 0:
                continue
            elif p.purpose == TX_DEFAULT and p.connector in (0, connector):
                out.append((p, tx_anchor))
            elif p.purpose == TX and p.connector == connector and _belongs_to(p, running):
                out.append((p, tx_anchor))
        return out

    def _decide(self, connector: int, t: float, transactions: Mapping[int, Transaction],
                idle_anchor: float) -> _Step:
        limits = self.limits
        hardware_phases = limits.phases
        steps = [_Step(limits.max_current_a, hardware_phases,
                       None if hardware_phases == DEFAULT_PHASES else hardware_phases, None, limits.max_current_a, 2)]
        by_purpose: dict[str, list[tuple[ChargingProfile, float]]] = {CHARGE_POINT_MAX: [], TX_DEFAULT: [], TX: []}
        for profile, anchor in self._sources(connector, transactions, idle_anchor):
            by_purpose[profile.purpose].append((profile, anchor if anchor is not None else t))
        # §3.13.3: TxProfile overrides TxDefaultProfile; both are capped by ChargePointMaxProfile.
        for purposes, rank in (((TX, TX_DEFAULT), 0), ((CHARGE_POINT_MAX,), 1)):
            for purpose in purposes:
                # §3.13.2: the highest stackLevel prevails; on a tie the connector's own profile
                # is more specific than a connectorId 0 one.
                ordered = sorted(by_purpose[purpose], key=lambda pa: (-pa[0].stack_level, pa[0].connector == 0))
                found = next(((p, period) for p, anchor in ordered
                              if (period := _period_at(p, anchor, t)) is not None), None)
                if found is not None:
                    steps.append(self._step(found[0], found[1], rank))
                    break
        return min(steps, key=lambda s: (s.amps, s.rank))

    def _step(self, profile: ChargingProfile, period: SchedulePeriod, rank: int) -> _Step:
        phases = min(period.number_phases or DEFAULT_PHASES, self.limits.phases)
        known = period.number_phases is not None or self.limits.phases != DEFAULT_PHASES
        unit = profile.schedule.unit
        amps = period.limit if unit == "A" else period.limit / (self.limits.voltage_v * phases)
        return _Step(amps, phases, phases if known else None, unit, period.limit, rank)

    def _in_unit(self, step: _Step, unit: str) -> float:
        if step.unit == unit:
            return _tenths(step.limit)
        if unit == "A":
            return _tenths(step.amps)
        return _tenths(step.amps * self.limits.voltage_v * step.phases)


# --- schedule arithmetic ----------------------------------------------------------------------


def _belongs_to(profile: ChargingProfile, running: Transaction | None) -> bool:
    return running is not None and (profile.transaction_id is None
                                    or profile.transaction_id == running.transaction_id)


def _occurrence_start(profile: ChargingProfile, anchor: float, t: float) -> float | None:
    """When the run of the schedule that covers ``t`` began (None: no run has begun by then)."""
    schedule = profile.schedule
    if profile.kind == RELATIVE:
        return anchor
    assert schedule.start is not None
    if profile.kind == ABSOLUTE:
        return schedule.start
    # §7.9 Recurring: the schedule restarts at its first period every day or week from startSchedule.
    every = RECURRENCE_S[profile.recurrency or "Daily"]
    if t < schedule.start:
        return None
    return schedule.start + math.floor((t - schedule.start) / every) * every


def _span(profile: ChargingProfile) -> float:
    """How long one run of the schedule lasts: its duration (§7.13), and a recurring run at most
    until the next recurrence."""
    duration = profile.schedule.duration_s
    if profile.kind == RECURRING:
        every = RECURRENCE_S[profile.recurrency or "Daily"]
        return every if duration is None else min(duration, every)
    return math.inf if duration is None else duration


def _period_at(profile: ChargingProfile, anchor: float, t: float) -> SchedulePeriod | None:
    """The period of ``profile`` in force at ``t``, or None if it says nothing then."""
    if profile.valid_from is not None and t < profile.valid_from:
        return None
    if profile.valid_to is not None and t >= profile.valid_to:
        return None
    begun = _occurrence_start(profile, anchor, t)
    if begun is None:
        return None
    offset = t - begun
    if offset < 0 or offset >= _span(profile):
        return None
    current = None
    for period in profile.schedule.periods:
        if period.start_s > offset:
            break
        current = period
    return current


def _boundaries(profile: ChargingProfile, anchor: float | None, a: float, b: float) -> Iterator[float]:
    """Instants in ``[a, b]`` where the profile may start, step or stop (a superset is fine).

    ``anchor`` None: a Relative profile moves with the instant asked about, so its schedule has
    no fixed steps; only its validity bounds count.
    """
    for t in (profile.valid_from, profile.valid_to):
        if t is not None and a <= t <= b:
            yield t
    if profile.kind == RELATIVE and anchor is None:
        return
    span = _span(profile)
    if profile.kind == RECURRING:
        every = RECURRENCE_S[profile.recurrency or "Daily"]
        first = profile.schedule.start
        k = max(0, math.floor((a - first) / every))
        runs: Iterable[float] = (first + i * every for i in range(k, k + math.floor((b - a) / every) + 2))
    else:
        runs = (anchor if profile.kind == RELATIVE else profile.schedule.start,)
    for run in runs:
        for t in [run + p.start_s for p in profile.schedule.periods if p.start_s < span] + [run + span]:
            if a <= t <= b:
                yield t


def _has_boundary_after(profile: ChargingProfile, anchor: float | None, t: float) -> bool:
    if profile.valid_to is not None and profile.valid_to <= t:
        return False
    if profile.kind == RECURRING or (profile.valid_from is not None and profile.valid_from > t):
        return True
    return any(True for _ in _boundaries(profile, anchor, math.nextafter(t, math.inf), math.inf))


def _tenths(x: float) -> float:
    """Down to 0.1 (a hair of float noise forgiven), so a reported limit never exceeds the real one."""
    return math.floor(x * 10 + 1e-6) / 10


# --- wire format ------------------------------------------------------------------------------


def format_time(t: float) -> str:
    """POSIX seconds as RFC 3339 UTC with "Z", fractions only when there are any."""
    moment = datetime.fromtimestamp(t, timezone.utc)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0") + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any, name: str = "time") -> float:
    """RFC 3339 (Z or offset, any fraction) or a datetime, as POSIX seconds; no offset means UTC."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, str) and len(value) > 10:
        try:
            return parse_timestamp(value)
        except ValueError:
            pass
    raise ProfileError(f"{name}: not an RFC 3339 date-time (got {value!r})")


def _period_to_ocpp(period: SchedulePeriod) -> dict:
    out: dict[str, Any] = {"startPeriod": period.start_s, "limit": period.limit}
    if period.number_phases is not None:
        out["numberPhases"] = period.number_phases
    return out


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.title() for word in rest)


def _field(payload: Mapping[str, Any], snake: str, name: str, required: bool = False) -> Any:
    """``payload[snake]`` or its camelCase twin; ``name`` is the OCPP path used in errors."""
    value = payload.get(snake)
    if value is None:
        value = payload.get(_camel(snake))
    if value is None and required:
        raise ProfileError(f"{name}: required")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(payload: Mapping[str, Any], snake: str, name: str, required: bool = False) -> int | None:
    value = _field(payload, snake, name, required)
    if value is None:
        return None
    if isinstance(value, (float, Decimal)) and value == int(value):
        value = int(value)
    if not _is_int(value):
        raise ProfileError(f"{name}: must be an integer (got {value!r})")
    return value


def _number(payload: Mapping[str, Any], snake: str, name: str, required: bool = False) -> float | None:
    value = _field(payload, snake, name, required)
    if value is None:
        return None
    # The ocpp library reads JSON decimals as Decimal.
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or not math.isfinite(value):
        raise ProfileError(f"{name}: must be a number (got {value!r})")
    return float(value)


def _choice(payload: Mapping[str, Any], snake: str, name: str, allowed: tuple[str, ...],
            required: bool = False) -> str | None:
    value = _field(payload, snake, name, required)
    if value is None:
        return None
    value = getattr(value, "value", value)  # the ocpp library's str enums
    if value not in allowed:
        raise ProfileError(f"{name}: must be one of {', '.join(allowed)} (got {value!r})")
    return value


def _time(payload: Mapping[str, Any], snake: str, name: str) -> float | None:
    value = _field(payload, snake, name)
    return None if value is None else parse_time(value, name)
