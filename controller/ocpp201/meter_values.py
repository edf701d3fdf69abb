"""MeterValueType (OCPP 2.0.1 Part 2 §2.35, SampledValueType) from the core's meter reports."""

from __future__ import annotations

from typing import Any

from evcp.core.actions import ReportMeterValues
from evcp.timestamps import timestamp

PHASES = ("L1", "L2", "L3")
UNITS = {"Energy.Active.Import.Register": "Wh", "Power.Active.Import": "W", "Current.Import": "A",
         "Current.Offered": "A", "Voltage": "V"}


def _value(number: float, measurand: str, context: str, phase: str | None = None) -> dict[str, Any]:
    sampled: dict[str, Any] = {"value": round(number, 3), "context": context, "measurand": measurand,
                               "location": "Outlet", "unitOfMeasure": {"unit": UNITS[measurand]}}
    if phase:
        sampled["phase"] = phase
    return sampled


def meter_value(report: ReportMeterValues, measurands: list[str], offered_a: float | None,
                context: str | None = None) -> dict[str, Any]:
    """One MeterValueType with a SampledValue per configured measurand (per phase for current and
    voltage); an empty list means Energy.Active.Import.Register."""
    context = context or report.context
    values: list[dict[str, Any]] = []
    for measurand in measurands or ["Energy.Active.Import.Register"]:
        if measurand == "Energy.Active.Import.Register":
            values.append(_value(report.energy_wh, measurand, context))
        elif measurand == "Power.Active.Import":
            values.append(_value(report.power_w, measurand, context))
        elif measurand == "Current.Offered":
            values.append(_value(offered_a or 0.0, measurand, context))
        elif measurand in ("Current.Import", "Voltage"):
            readings = report.current_a if measurand == "Current.Import" else report.voltage_v
            for index, reading in enumerate(readings[: len(PHASES)]):
                phase = PHASES[index] if measurand == "Current.Import" else PHASES[index] + "-N"
                values.append(_value(reading, measurand, context, phase))
    if not values:
        values.append(_value(report.energy_wh, "Energy.Active.Import.Register", context))
    return {"timestamp": timestamp(report.at), "sampledValue": values}
