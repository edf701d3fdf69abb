"""The 2.0.1 device model: GetVariables / SetVariables statuses, reports, persistence, settings."""

from __future__ import annotations

from evcp.core.model import Settings
from evcp.ocpp201.device_model import DeviceModel, settings_from, station_variables


def model() -> DeviceModel:
    return DeviceModel(station_variables(2, "evcp", "bench", "SN1", "evcp 0.1"))


def test_get_known_unknown_component_unknown_variable_and_attribute_types():
    m = model()
    assert m.get_variable({"name": "TxCtrlr"}, {"name": "StopTxOnInvalidId"}, None).status == "Accepted"
    assert m.get_variable({"name": "TxCtrlr"}, {"name": "Nope"}, None).status == "UnknownVariable"
    assert m.get_variable({"name": "Nope"}, {"name": "Enabled"}, None).status == "UnknownComponent"
    assert m.get_variable({"name": "TxCtrlr"}, {"name": "TxStartPoint"}, "Target").status == "NotSupportedAttributeType"
    assert m.get_variable({"name": "EVSE", "evse": {"id": 2}}, {"name": "AvailabilityState"}, None).value == "Available"
    assert m.get_variable({"name": "EVSE", "evse": {"id": 3}}, {"name": "AvailabilityState"}, None).status \
        == "UnknownComponent"


def test_set_checks_mutability_type_and_range():
    m = model()
    assert m.set_variable({"name": "ChargingStation"}, {"name": "Model"}, "x", None).status == "Rejected"
    assert m.set_variable({"name": "TxCtrlr"}, {"name": "StopTxOnInvalidId"}, "maybe", None).status == "Rejected"
    assert m.set_variable({"name": "TxCtrlr"}, {"name": "EVConnectionTimeOut"}, "0", None).status == "Rejected"
    assert m.set_variable({"name": "TxCtrlr"}, {"name": "TxStartPoint"}, "EVConnected,DataSigned", None).status \
        == "Rejected"  # DataSigned is not supported
    assert m.set_variable({"name": "TxCtrlr"}, {"name": "TxStartPoint"}, "EVConnected,Authorized", None).status \
        == "Accepted"
    assert m.members("TxCtrlr", "TxStartPoint") == ["EVConnected", "Authorized"]


def test_values_set_survive_a_restart_and_drive_the_core():
    m = model()
    m.set_variable({"name": "SampledDataCtrlr"}, {"name": "TxUpdatedInterval"}, "15", None)
    m.set_variable({"name": "TxCtrlr"}, {"name": "StopTxOnEVSideDisconnect"}, "false", None)
    again = model()
    assert again.restore(m.saved()) == []
    settings = settings_from(again, Settings())
    assert settings.meter_sample_interval_s == 15.0 and settings.stop_on_ev_disconnect is False
    assert again.restore({"TxCtrlr///Gone/": "1"}) != []


def test_tx_ended_intervals_and_aligned_ended_measurands_are_writable_persisted_reported_and_drive_the_core():
    m = model()
    names = {(i["component"]["name"], i["variable"]["name"]): i for i in m.report("FullInventory")}
    for key in [("SampledDataCtrlr", "TxEndedInterval"), ("AlignedDataCtrlr", "TxEndedMeasurands"),
                ("AlignedDataCtrlr", "TxEndedInterval")]:
        attribute = names[key]["variableAttribute"][0]
        assert (attribute["mutability"], attribute["persistent"]) == ("ReadWrite", True), key
    assert names[("SampledDataCtrlr", "TxEndedInterval")]["variableCharacteristics"]["unit"] == "s"
    assert m.set_variable({"name": "AlignedDataCtrlr"}, {"name": "TxEndedMeasurands"}, "Voltage,Nope", None).status \
        == "Rejected"
    for component, name, value in [("SampledDataCtrlr", "TxEndedInterval", "60"),
                                   ("AlignedDataCtrlr", "TxEndedInterval", "900"),
                                   ("AlignedDataCtrlr", "TxEndedMeasurands", "Energy.Active.Import.Register,Voltage")]:
        assert m.set_variable({"name": component}, {"name": name}, value, None).status == "Accepted"
    again = model()
    assert again.restore(m.saved()) == []
    assert again.members("AlignedDataCtrlr", "TxEndedMeasurands") == ["Energy.Active.Import.Register", "Voltage"]
    settings = settings_from(again, Settings())
    assert (settings.end_sample_interval_s, settings.end_clock_aligned_interval_s) == (60.0, 900.0)


def test_reports():
    m = model()
    full = m.report("FullInventory")
    assert len(full) == len(m.variables)
    writable = m.report("ConfigurationInventory")
    assert writable and all(item["variableAttribute"][0]["mutability"] == "ReadWrite" for item in writable)
    assert m.report("CustomReport") is None


def secured(password: str = "") -> DeviceModel:
    from evcp.ocpp201.security import password_rule
    from evcp.ocpp201.device_model import security_variables

    return DeviceModel(station_variables(1, "evcp", "bench", "SN1", "evcp 0.1")
                       + security_variables(2, "CP-1", password, 10_000, password_rule))


def test_basic_auth_password_is_write_only_checked_and_never_reported():
    m = secured("installer-password-1")
    password = ({"name": "SecurityCtrlr"}, {"name": "BasicAuthPassword"})
    assert m.get_variable(*password, None).status == "Rejected"
    short = m.set_variable(*password, "short", None)
    assert short.status == "Rejected" and "16 to 40" in short.reason
    assert m.set_variable(*password, "x" * 41, None).status == "Rejected"
    assert m.set_variable(*password, "a-new-password-from-the-csms", None).status == "Accepted"
    assert m.get("SecurityCtrlr", "BasicAuthPassword") == "a-new-password-from-the-csms"
    [item] = [i for i in m.report("FullInventory") if i["variable"]["name"] == "BasicAuthPassword"]
    assert "value" not in item["variableAttribute"][0]
    assert m.set_variable({"name": "SecurityCtrlr"}, {"name": "SecurityProfile"}, "3", None).status == "Rejected"


def test_password_set_by_the_csms_survives_a_restart_and_an_unset_one_restores_quietly():
    m = secured()
    assert m.restore(m.saved()) == []  # no password yet: nothing to complain about
    m.set_variable({"name": "SecurityCtrlr"}, {"name": "BasicAuthPassword"}, "a-new-password-from-the-csms", None)
    again = secured("installer-password-1")
    assert again.restore(m.saved()) == []
    assert again.get("SecurityCtrlr", "BasicAuthPassword") == "a-new-password-from-the-csms"
