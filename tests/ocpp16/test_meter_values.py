"""MeterValues payloads: one SampledValue per configured measurand, per phase where it has phases."""

from evcp.core.actions import ReportMeterValues
from evcp.ocpp16.meter_values import meter_values_payload, sampled_values
from evcp.timestamps import timestamp

REPORT = ReportMeterValues(1, 3, 99, 1234.5, 7400.0, (10.7, 10.8, 10.6), (230.1, 229.9, 231.0),
                           1_700_000_000.25, "Sample.Periodic")


def test_default_measurand_is_the_energy_register():
    [value] = sampled_values(REPORT, [], None)
    assert value == {"value": "1234.5", "context": "Sample.Periodic", "format": "Raw",
                     "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"}


def test_phases_and_units():
    values = sampled_values(REPORT, ["Current.Import", "Voltage.L2-N", "Power.Active.Import", "Current.Offered"], 16.0)
    assert [(v["measurand"], v.get("phase"), v["unit"], v["value"]) for v in values] == [
        ("Current.Import", "L1", "A", "10.7"), ("Current.Import", "L2", "A", "10.8"),
        ("Current.Import", "L3", "A", "10.6"), ("Voltage", "L2-N", "V", "229.9"),
        ("Power.Active.Import", None, "W", "7400"), ("Current.Offered", None, "A", "16"),
    ]


def test_payload_carries_the_transaction_and_a_utc_timestamp():
    payload = meter_values_payload(REPORT, [], None, 99)
    assert payload["transactionId"] == 99 and payload["connectorId"] == 1
    assert payload["meterValue"][0]["timestamp"] == "2023-11-14T22:13:20.250Z" == timestamp(REPORT.at)


def test_no_transaction_id_outside_a_transaction():
    outside = ReportMeterValues(1, None, None, 1.0, 0.0, (), (), 0.0, "Sample.Clock")
    assert "transactionId" not in meter_values_payload(outside, [], None, None)
