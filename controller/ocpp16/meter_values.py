"""MeterValues payloads (OCPP 1.6 §7.17 SampledValue) from the core's meter reports."""

from __future__ import annotations

from typing import Any

from evcp.core.actions import ReportMeterValues
from evcp.ocpp16.configuration import split_measurand
from evcp.timestamps import timestamp

PHASES = ("L1", "L2", "L3")


def _value(number: float, measurand: str, unit: str, context: str, phase: str | None = None) -> dict[str, Any]:
    sampled = {
        "value": f"{number:.3f}".rstrip("0").rstrip(".") if number % 1 else str(int(number)),
        "context": context,
        "format": "Raw",
        "measurand": measurand,
        "location": "Outlet",
        "unit": unit,
    }
    if phase:
        sampled["phase"] = phase
    return sampled


def sampled_values(report: ReportMeterValues, measurands: list[str], offered_a: float | None) -> list[dict[str, Any]]:
    """One SampledValue per configured measurand (per phase where the measurand has phases).

    An empty measurand list means Energy.Active.Import.Register (OCTT TC_070).
    """
    values: list[dict[str, Any]] = []
    for item in measurands or ["Energy.Active.Import.Register"]:
        measurand, phase = split_measurand(item)
        if measurand == "Energy.Active.Import.Register":
            values.append(_value(report.energy_wh, measurand, "Wh", report.context))
        elif measurand == "Power.Active.Import":
            values.append(_value(report.power_w, measurand, "W", report.context))
        elif measurand == "Current.Offered":
            values.append(_value(offered_a or 0.0, measurand, "A", report.context))
        elif measurand in ("Current.Import", "Voltage"):
            readings = report.current_a if measurand == "Current.Import" else report.voltage_v
            unit = "A" if measurand == "Current.Import" else "V"
            for index, reading in enumerate(readings[: len(PHASES)]):
                name = PHASES[index] if measurand == "Current.Import" else PHASES[index] + "-N"
                if phase is None or name.startswith(phase):
                    values.append(_value(reading, measurand, unit, report.context, name))
    return values


def meter_values_payload(report: ReportMeterValues, measurands: list[str], offered_a: float | None,
                         transaction_id: int | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "connectorId": report.connector,
        "meterValue": [{"timestamp": timestamp(report.at),
                        "sampledValue": sampled_values(report, measurands, offered_a)}],
    }
    if report.local_id is not None:
        payload["transactionId"] = transaction_id
    return payload
