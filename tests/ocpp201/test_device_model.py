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
    from evcp.ocpp201.device_model import security_variables

    return DeviceModel(station_variables(1, "evcp", "bench", "SN1", "evcp 0.1")
                       + security_variables(2, "CP-1", password, 10_000))


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


INSTALLER_FIELDS = {"max_current_a", "tethered_cable", "cable_sensing", "socket_locks", "mirror_contacts", "require_meter",
                    "offline_start", "phases", "voltage_v"}
"""What the installer's file and the hardware decide (``Controller.installer_settings``)."""


def test_every_protocol_setting_of_the_core_comes_from_the_device_model_never_from_what_was_there():
    """Under 2.0.1 no core setting may keep a value from elsewhere (the OCPP 1.6 keys): each one
    that is not the installer's is overwritten from the device model."""
    from dataclasses import fields, replace

    def other(value):
        if isinstance(value, bool):
            return not value
        if isinstance(value, (int, float)):
            return value + 4321
        return ("from-elsewhere",)

    clean = Settings()
    poisoned = replace(clean, **{f.name: other(getattr(clean, f.name)) for f in fields(Settings)
                                 if f.name not in INSTALLER_FIELDS})
    assert settings_from(model(), poisoned) == settings_from(model(), clean)


def test_tx_ctrlr_max_energy_on_invalid_id_and_unlock_on_ev_side_disconnect_drive_the_core():
    m = model()
    defaults = settings_from(m, Settings(max_energy_on_invalid_wh=5000.0, unlock_on_ev_disconnect=False))
    assert (defaults.max_energy_on_invalid_wh, defaults.unlock_on_ev_disconnect) == (0.0, True)
    assert m.set_variable({"name": "TxCtrlr"}, {"name": "MaxEnergyOnInvalidId"}, "-1", None).status == "Rejected"
    assert m.set_variable({"name": "TxCtrlr"}, {"name": "MaxEnergyOnInvalidId"}, "2500", None).status == "Accepted"
    assert m.set_variable({"name": "OCPPCommCtrlr"}, {"name": "UnlockOnEVSideDisconnect"}, "false",
                          None).status == "Accepted"
    changed = settings_from(m, Settings())
    assert (changed.max_energy_on_invalid_wh, changed.unlock_on_ev_disconnect) == (2500.0, False)
    [item] = [i for i in m.report("FullInventory") if i["variable"]["name"] == "MaxEnergyOnInvalidId"]
    assert item["component"] == {"name": "TxCtrlr"}
    assert item["variableAttribute"] == [{"type": "Actual", "mutability": "ReadWrite", "persistent": True,
                                          "constant": False, "value": "2500"}]
    assert item["variableCharacteristics"]["unit"] == "Wh"


def test_the_installers_values_are_checked_then_the_csms_changes_them_and_only_its_changes_are_saved():
    m = model()
    for name, problem in [("TxCtrlr.Nope", "no such variable"), ("ChargingStation.Model", "charge_point.model"),
                          ("SmartChargingCtrlr.ProfileStackLevel", "read-only"),
                          ("TxCtrlr.MaxEnergyOnInvalidId", "at least 0")]:
        assert problem in m.installer_value_problem(name, "-1")
    m.set_initial({"TxCtrlr.MaxEnergyOnInvalidId": "500", "OCPPCommCtrlr.MessageAttempts.TransactionEvent": "5"})
    assert m.number("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent") == 5
    assert m.saved() == {}  # nothing the CSMS changed: a restart takes the file's values again
    m.set_variable({"name": "TxCtrlr"}, {"name": "MaxEnergyOnInvalidId"}, "800", None)
    assert m.saved() == {"TxCtrlr///MaxEnergyOnInvalidId/": "800"}
    edited = model()
    edited.set_initial({"TxCtrlr.MaxEnergyOnInvalidId": "100", "OCPPCommCtrlr.MessageAttempts.TransactionEvent": "7"})
    assert edited.restore(m.saved()) == []
    assert edited.get("TxCtrlr", "MaxEnergyOnInvalidId") == "800"  # the CSMS's change wins
    assert edited.number("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent") == 7  # the file's edit applies
