"""MeterValueType of the 2.0.1 adapter (Part 2 §2.35, J01/J02): one SampledValue per configured
measurand, per phase where it has phases, with its unit, location and reading context. Each one
is checked against the OCPP 2.0.1 MeterValuesRequest schema."""

from __future__ import annotations

from ocpp.messages import Call, _validate_payload

from evcp.core.actions import ReportMeterValues
from evcp.ocpp201.device_model import MEASURANDS
from evcp.ocpp201.meter_values import meter_value

REPORT = ReportMeterValues(1, 3, 3, 1234.5, 7400.0, (10.7, 10.8, 10.6), (230.1, 229.9, 231.0),
                           1_700_000_000.25, "Sample.Periodic")


def valid(value: dict) -> dict:
    _validate_payload(Call("1", "MeterValues", {"evseId": 1, "meterValue": [value]}), "2.0.1")
    return value


def test_no_measurand_configured_is_the_energy_register():
    value = valid(meter_value(REPORT, [], None))
    assert value == {"timestamp": "2023-11-14T22:13:20.250Z", "sampledValue": [
        {"value": 1234.5, "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register",
         "location": "Outlet", "unitOfMeasure": {"unit": "Wh"}}]}


def test_every_measurand_the_station_offers_with_its_phases_and_units():
    value = valid(meter_value(REPORT, list(MEASURANDS), 16.0))
    assert [(v["measurand"], v.get("phase"), v["unitOfMeasure"]["unit"], v["value"]) for v in value["sampledValue"]] == [
        ("Energy.Active.Import.Register", None, "Wh", 1234.5), ("Power.Active.Import", None, "W", 7400.0),
        ("Current.Import", "L1", "A", 10.7), ("Current.Import", "L2", "A", 10.8), ("Current.Import", "L3", "A", 10.6),
        ("Voltage", "L1-N", "V", 230.1), ("Voltage", "L2-N", "V", 229.9), ("Voltage", "L3-N", "V", 231.0),
        ("Current.Offered", None, "A", 16.0)]


def test_the_context_given_overrides_the_reports():
    value = valid(meter_value(REPORT, ["Energy.Active.Import.Register", "Power.Active.Import"], None,
                              "Transaction.End"))
    assert {v["context"] for v in value["sampledValue"]} == {"Transaction.End"}
    assert {v["context"] for v in meter_value(REPORT, [], None)["sampledValue"]} == {"Sample.Periodic"}


def test_a_single_phase_meter_gives_one_value_per_reading_it_has():
    single = ReportMeterValues(1, None, None, 10.0, 2300.0, (10.0,), (230.0,), 0.0, "Sample.Clock")
    value = valid(meter_value(single, ["Current.Import", "Voltage"], None))
    assert [(v["measurand"], v["phase"]) for v in value["sampledValue"]] == [("Current.Import", "L1"),
                                                                            ("Voltage", "L1-N")]


def test_measurands_without_a_reading_fall_back_to_the_energy_register_and_no_offer_is_zero_amps():
    silent = ReportMeterValues(1, None, None, 10.0, 0.0, (), (), 0.0, "Sample.Clock")
    assert [v["measurand"] for v in valid(meter_value(silent, ["Current.Import"], None))["sampledValue"]] == [
        "Energy.Active.Import.Register"]
    offered, = valid(meter_value(silent, ["Current.Offered"], None))["sampledValue"]
    assert offered["value"] == 0.0
