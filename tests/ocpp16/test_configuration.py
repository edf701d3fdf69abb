"""OCPP 1.6 configuration keys: GetConfiguration (§5.8), ChangeConfiguration (§5.3), §9.1 keys."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evcp.ocpp16.configuration import (
    MEASURAND_ITEMS,
    Configuration,
    Text,
    TooManyKeysRequested,
    split_measurand,
)

# Core keys every charge point must have, with the accessibility of OCPP 1.6 §9.1
# (as OCTT TC_019_CS checks it). None = "R or RW", the implementation's choice.
REQUIRED_CORE_KEYS = {
    "AuthorizeRemoteTxRequests": None,
    "ClockAlignedDataInterval": "RW",
    "ConnectionTimeOut": "RW",
    "ConnectorPhaseRotation": "RW",
    "GetConfigurationMaxKeys": "R",
    "HeartbeatInterval": "RW",
    "LocalAuthorizeOffline": "RW",
    "LocalPreAuthorize": "RW",
    "MeterValuesAlignedData": "RW",
    "MeterValuesSampledData": "RW",
    "MeterValueSampleInterval": "RW",
    "NumberOfConnectors": "R",
    "ResetRetries": "RW",
    "StopTransactionOnEVSideDisconnect": "RW",
    "StopTransactionOnInvalidId": "RW",
    "StopTxnAlignedData": "RW",
    "StopTxnSampledData": "RW",
    "SupportedFeatureProfiles": "R",
    "TransactionMessageAttempts": "RW",
    "TransactionMessageRetryInterval": "RW",
    "UnlockConnectorOnEVSideDisconnect": "RW",
}

# Optional Core keys of §9.1 this charger implements, with their accessibility.
OPTIONAL_CORE_KEYS = {
    "AllowOfflineTxForUnknownId": "RW",
    "AuthorizationCacheEnabled": "RW",
    "ConnectorPhaseRotationMaxLength": "R",
    "MaxEnergyOnInvalidId": "RW",
    "MeterValuesAlignedDataMaxLength": "R",
    "MeterValuesSampledDataMaxLength": "R",
    "MinimumStatusDuration": "RW",
    "StopTxnAlignedDataMaxLength": "R",
    "StopTxnSampledDataMaxLength": "R",
    "SupportedFeatureProfilesMaxLength": "R",
    "WebSocketPingInterval": "RW",
}

# §9.2-§9.4 keys of the other feature profiles, with their accessibility.
PROFILE_KEYS = {
    "LocalAuthListEnabled": "RW",
    "LocalAuthListMaxLength": "R",
    "SendLocalListMaxLength": "R",
    "ReserveConnectorZeroSupported": "R",
    "ChargeProfileMaxStackLevel": "R",
    "ChargingScheduleAllowedChargingRateUnit": "R",
    "ChargingScheduleMaxPeriods": "R",
    "ConnectorSwitch3to1PhaseSupported": "R",
    "MaxChargingProfilesInstalled": "R",
    "SupportedFileTransferProtocols": "R",
}

NOT_IMPLEMENTED_KEYS = ("BlinkRepeat", "LightIntensity")

FEATURE_PROFILES = {
    "Core", "FirmwareManagement", "LocalAuthListManagement", "Reservation", "SmartCharging", "RemoteTrigger",
}


@pytest.fixture
def config() -> Configuration:
    return Configuration(number_of_connectors=2)


def value_of(config: Configuration, key: str) -> str:
    entries, unknown = config.get_configuration([key])
    assert unknown == []
    (entry,) = entries
    return entry["value"]


def all_entries(config: Configuration) -> dict[str, dict]:
    entries, unknown = config.get_configuration()
    assert unknown == []
    return {entry["key"]: entry for entry in entries}


# --- TC_019_CS: retrieve configuration ------------------------------------------------


def test_supported_feature_profiles_answered_alone_and_lists_core(config):
    entries, unknown = config.get_configuration(["SupportedFeatureProfiles"])
    assert unknown == []
    assert [entry["key"] for entry in entries] == ["SupportedFeatureProfiles"]
    profiles = entries[0]["value"].split(",")
    assert "Core" in profiles
    assert set(profiles) <= FEATURE_PROFILES


def test_every_required_core_key_present_with_spec_accessibility(config):
    entries = all_entries(config)
    for key, access in REQUIRED_CORE_KEYS.items():
        assert key in entries, key
        if access is not None:
            assert entries[key]["readonly"] is (access == "R"), key


def test_optional_core_keys_have_spec_accessibility(config):
    entries = all_entries(config)
    for key, access in OPTIONAL_CORE_KEYS.items():
        assert entries[key]["readonly"] is (access == "R"), key


SECURITY_KEYS = {"SecurityProfile", "AuthorizationKey", "CpoName", "AdditionalRootCertificateCheck",
                 "CertificateSignedMaxChainSize", "CertificateStoreMaxLength"}
"""OCPP 1.6 security whitepaper keys, beside the Core profile's."""


def test_profile_keys_have_spec_accessibility(config):
    entries = all_entries(config)
    for key, access in PROFILE_KEYS.items():
        assert entries[key]["readonly"] is (access == "R"), key


def test_every_key_belongs_to_an_implemented_profile(config):
    assert set(all_entries(config)) == (set(REQUIRED_CORE_KEYS) | set(OPTIONAL_CORE_KEYS) | SECURITY_KEYS
                                        | set(PROFILE_KEYS))
    _, unknown = config.get_configuration(list(NOT_IMPLEMENTED_KEYS))
    assert unknown == list(NOT_IMPLEMENTED_KEYS)


def test_supported_feature_profiles_lists_every_profile_implemented(config):
    assert set(value_of(config, "SupportedFeatureProfiles").split(",")) == FEATURE_PROFILES


def test_values_are_ocpp_strings(config):
    for key, entry in all_entries(config).items():
        value = entry["value"]
        assert isinstance(value, str) and len(value) <= 500, key
        assert " " not in value, key
        if isinstance(config.get(key), bool):
            assert value in ("true", "false"), key


def test_defaults(config):
    assert config.get("MeterValuesSampledData") == ["Energy.Active.Import.Register"]
    assert config.get("MeterValueSampleInterval") == 60
    assert config.get("ClockAlignedDataInterval") == 0
    assert config.get("HeartbeatInterval") == 300
    assert config.get("ConnectionTimeOut") == 60
    assert config.get("StopTransactionOnEVSideDisconnect") is True
    assert config.get("StopTransactionOnInvalidId") is True
    assert config.get("AuthorizeRemoteTxRequests") is False
    assert config.get("LocalPreAuthorize") is False
    assert config.get("LocalAuthorizeOffline") is False
    assert config.get("AuthorizationCacheEnabled") is True
    assert config.get("LocalAuthListEnabled") is True
    assert config.get("AllowOfflineTxForUnknownId") is False
    assert config.get("TransactionMessageAttempts") == 3
    assert config.get("TransactionMessageRetryInterval") == 60
    assert config.get("MinimumStatusDuration") == 0
    assert config.get("ResetRetries") == 1
    assert config.get("UnlockConnectorOnEVSideDisconnect") is True
    assert config.get("SupportedFeatureProfiles") == ["Core", "FirmwareManagement", "LocalAuthListManagement",
                                                      "Reservation", "SmartCharging", "RemoteTrigger"]
    assert config.get("ReserveConnectorZeroSupported") is True
    assert config.get("NumberOfConnectors") == 2
    assert config.get("ConnectorPhaseRotation") == ["1.Unknown", "2.Unknown"]


def test_every_default_is_valid_and_canonical(config):
    before = all_entries(config)
    for key, entry in before.items():
        if entry["readonly"]:
            config.set_internal(key, entry["value"])
        else:
            assert config.change(key, entry["value"]) in ("Accepted", "RebootRequired"), key
    assert all_entries(config) == before


def test_keys_are_case_insensitive_and_answered_once(config):
    entries, unknown = config.get_configuration(["heartbeatinterval", "HeartbeatInterval", "Nope", "Nope"])
    assert [entry["key"] for entry in entries] == ["HeartbeatInterval"]
    assert unknown == ["Nope"]
    assert config.change("HEARTBEATINTERVAL", "120") == "Accepted"
    assert config.get("heartbeatInterval") == 120


def test_empty_key_list_answers_every_key(config):
    assert config.get_configuration([]) == config.get_configuration(None)


def test_requested_keys_limited_by_get_configuration_max_keys():
    config = Configuration(1)
    config.set_internal("GetConfigurationMaxKeys", "3")
    entries, _ = config.get_configuration(["HeartbeatInterval", "ResetRetries", "Unknown"])
    assert len(entries) == 2
    with pytest.raises(TooManyKeysRequested) as raised:
        config.get_configuration(["HeartbeatInterval", "ResetRetries", "ConnectionTimeOut", "X"])
    assert (raised.value.requested, raised.value.limit) == (4, 3)
    assert len(config.get_configuration()[0]) > 3


# --- TC_021_CS / TC_040_CS: change configuration ---------------------------------------


def test_tc_021_change_meter_value_sample_interval_then_read_back(config):
    assert config.change("MeterValueSampleInterval", "15") == "Accepted"
    assert value_of(config, "MeterValueSampleInterval") == "15"
    assert config.get("MeterValueSampleInterval") == 15


def test_tc_040_1_unknown_key_not_supported(config):
    assert config.change("Testing", "true") == "NotSupported"
    assert config.snapshot() == {}


@pytest.mark.parametrize(
    "key, value",
    [
        ("HeartbeatInterval", "abc"),
        ("HeartbeatInterval", ""),
        ("HeartbeatInterval", " 60"),
        ("HeartbeatInterval", "+60"),
        ("HeartbeatInterval", "60.0"),
        ("HeartbeatInterval", "0"),
        ("HeartbeatInterval", "\uff16\uff10"),
        ("HeartbeatInterval", "1" * 501),
        ("MeterValueSampleInterval", "-1"),
        ("ClockAlignedDataInterval", "86401"),
        ("WebSocketPingInterval", "-30"),
        ("TransactionMessageAttempts", "99999999999"),
        ("StopTransactionOnInvalidId", "yes"),
        ("StopTransactionOnInvalidId", "1"),
        ("StopTransactionOnInvalidId", "true "),
        ("StopTransactionOnInvalidId", ""),
    ],
)
def test_tc_040_2_invalid_value_rejected_and_value_kept(config, key, value):
    before = value_of(config, key)
    assert config.change(key, value) == "Rejected"
    assert value_of(config, key) == before
    assert config.snapshot() == {}


@pytest.mark.parametrize(
    "key, value",
    [
        ("NumberOfConnectors", "3"),
        ("SupportedFeatureProfiles", "Core,SmartCharging"),
        ("GetConfigurationMaxKeys", "10"),
        ("MeterValuesSampledDataMaxLength", "20"),
    ],
)
def test_readonly_key_rejected(config, key, value):
    before = value_of(config, key)
    assert config.change(key, value) == "Rejected"
    assert value_of(config, key) == before


def test_change_needing_reboot_is_stored(config):
    assert config.change("WebSocketPingInterval", "10") == "RebootRequired"
    assert config.get("WebSocketPingInterval") == 10
    assert config.snapshot() == {"WebSocketPingInterval": "10"}


@pytest.mark.parametrize(
    "value, stored",
    [("true", "true"), ("TRUE", "true"), ("False", "false"), ("fAlSe", "false")],
)
def test_bool_stored_lower_case(config, value, stored):
    assert config.change("LocalPreAuthorize", value) == "Accepted"
    assert value_of(config, "LocalPreAuthorize") == stored
    assert config.get("LocalPreAuthorize") is (stored == "true")


def test_int_stored_without_leading_zeros(config):
    assert config.change("HeartbeatInterval", "0090") == "Accepted"
    assert value_of(config, "HeartbeatInterval") == "90"


def test_value_of_500_characters_is_not_rejected_for_its_length(config):
    assert config.change("MaxEnergyOnInvalidId", "0" * 499 + "7") == "Accepted"
    assert config.get("MaxEnergyOnInvalidId") == 7


# --- Measurand lists -------------------------------------------------------------------

MEASURAND_KEYS = ("MeterValuesSampledData", "MeterValuesAlignedData", "StopTxnSampledData", "StopTxnAlignedData")


@pytest.mark.parametrize("key", MEASURAND_KEYS)
def test_measurand_list_normalised(config, key):
    assert config.change(key, "energy.active.import.register, Power.Active.Import ,VOLTAGE.l1-n") == "Accepted"
    assert value_of(config, key) == "Energy.Active.Import.Register,Power.Active.Import,Voltage.L1-N"
    assert config.get(key) == ["Energy.Active.Import.Register", "Power.Active.Import", "Voltage.L1-N"]


@pytest.mark.parametrize("key", MEASURAND_KEYS)
def test_empty_measurand_list_accepted(config, key):
    config.change(key, "Current.Import")
    assert config.change(key, "") == "Accepted"
    assert config.get(key) == []


@pytest.mark.parametrize(
    "value",
    [
        "SoC",
        "Temperature",
        "Frequency",
        "Energy.Active.Export.Register",
        "Current.Import.N",
        "Energy.Active.Import.Register.L1",
        "Bogus",
        "Energy.Active.Import.Register,",
        ",Voltage",
        "Voltage,,Current.Import",
        "Voltage;Current.Import",
        "Voltage,Voltage",
        "Voltage,voltage",
    ],
)
def test_measurand_list_invalid_rejected(config, value):
    assert config.change("MeterValuesSampledData", value) == "Rejected"
    assert config.get("MeterValuesSampledData") == ["Energy.Active.Import.Register"]


def test_measurand_list_limited_by_max_length(config):
    limit = config.get("MeterValuesSampledDataMaxLength")
    assert len(MEASURAND_ITEMS) > limit
    assert config.change("MeterValuesSampledData", ",".join(MEASURAND_ITEMS[:limit])) == "Accepted"
    assert config.change("MeterValuesSampledData", ",".join(MEASURAND_ITEMS[: limit + 1])) == "Rejected"
    assert config.get("MeterValuesSampledData") == list(MEASURAND_ITEMS[:limit])


def test_every_supported_measurand_item_accepted_and_split(config):
    for item in MEASURAND_ITEMS:
        assert config.change("MeterValuesAlignedData", item) == "Accepted", item
        measurand, phase = split_measurand(item)
        assert item == (measurand if phase is None else f"{measurand}.{phase}")
    assert split_measurand("Current.Import.L2") == ("Current.Import", "L2")
    assert split_measurand("Energy.Active.Import.Register") == ("Energy.Active.Import.Register", None)
    with pytest.raises(ValueError):
        split_measurand("SoC")


# --- ConnectorPhaseRotation and SupportedFeatureProfiles ---------------------------------


def test_connector_phase_rotation(config):
    assert config.change("ConnectorPhaseRotation", "0.RST, 1.rts,2.NotApplicable") == "Accepted"
    assert value_of(config, "ConnectorPhaseRotation") == "0.RST,1.RTS,2.NotApplicable"
    for invalid in ("3.RST", "1.XYZ", "RST", "1.RST,1.RTS", "a.RST", "-1.RST"):
        assert config.change("ConnectorPhaseRotation", invalid) == "Rejected", invalid


def test_supported_feature_profiles_set_by_controller(config):
    config.set_internal("SupportedFeatureProfiles", "Core,RemoteTrigger")
    assert value_of(config, "SupportedFeatureProfiles") == "Core,RemoteTrigger"
    with pytest.raises(ValueError, match="SupportedFeatureProfiles.*Core"):
        config.set_internal("SupportedFeatureProfiles", "RemoteTrigger")
    with pytest.raises(ValueError, match="SupportedFeatureProfiles"):
        config.set_internal("SupportedFeatureProfiles", "Core,Teleportation")
    assert config.get("SupportedFeatureProfiles") == ["Core", "RemoteTrigger"]


def test_set_internal_unknown_key_raises(config):
    with pytest.raises(ValueError, match="Testing"):
        config.set_internal("Testing", "1")


# --- Listeners ---------------------------------------------------------------------------


def test_listeners_fire_only_on_accepted_change(config):
    heard = []
    config.on_change(lambda key, value: heard.append((key, value)))
    config.change("Testing", "true")
    config.change("HeartbeatInterval", "-1")
    config.change("NumberOfConnectors", "5")
    config.change("HeartbeatInterval", "300")
    assert heard == []
    assert config.change("HeartbeatInterval", "120") == "Accepted"
    assert config.change("StopTransactionOnInvalidId", "FALSE") == "Accepted"
    assert config.change("MeterValuesSampledData", "Voltage,Current.Import") == "Accepted"
    assert heard == [
        ("HeartbeatInterval", 120),
        ("StopTransactionOnInvalidId", False),
        ("MeterValuesSampledData", ["Voltage", "Current.Import"]),
    ]


def test_listener_hears_controller_changes_and_can_unsubscribe(config):
    heard = []
    unsubscribe = config.on_change(lambda key, value: heard.append((key, value)))
    config.set_internal("HeartbeatInterval", "900")
    unsubscribe()
    config.change("HeartbeatInterval", "60")
    assert heard == [("HeartbeatInterval", 900)]


def test_failing_listener_does_not_silence_others(config):
    heard = []

    def broken(key, value):
        raise RuntimeError("boom")

    config.on_change(broken)
    config.on_change(lambda key, value: heard.append(key))
    with pytest.raises(ExceptionGroup):
        config.change("ResetRetries", "2")
    assert heard == ["ResetRetries"]
    assert config.get("ResetRetries") == 2


# --- Installer overrides -------------------------------------------------------------------


def test_initial_overrides_applied_normalised_and_not_in_snapshot():
    config = Configuration(
        1,
        {"HeartbeatInterval": "0120", "localpreauthorize": "TRUE", "ConnectorPhaseRotation": "0.RST,1.RST"},
    )
    assert value_of(config, "HeartbeatInterval") == "120"
    assert value_of(config, "LocalPreAuthorize") == "true"
    assert config.get("ConnectorPhaseRotation") == ["0.RST", "1.RST"]
    assert config.snapshot() == {}


@pytest.mark.parametrize(
    "initial, message",
    [
        ({"Testing": "true"}, r"Testing: unknown"),
        ({"HeartbeatInterval": "soon"}, r"HeartbeatInterval: expected a decimal integer \(got 'soon'\)"),
        ({"HeartbeatInterval": "-5"}, r"HeartbeatInterval: expected 1\.\.86400 \(got '-5'\)"),
        ({"HeartbeatInterval": 300}, r"HeartbeatInterval: expected a string"),
        ({"StopTransactionOnInvalidId": "yes"}, r"StopTransactionOnInvalidId: expected true or false"),
        ({"MeterValuesSampledData": "SoC"}, r"MeterValuesSampledData: 'SoC' is not one of"),
        ({"NumberOfConnectors": "2"}, r"NumberOfConnectors: read-only, set by the controller"),
        ({"SupportedFeatureProfiles": "Core,SmartCharging"}, r"SupportedFeatureProfiles: read-only, set by"),
        ({"GetConfigurationMaxKeys": "20"}, r"GetConfigurationMaxKeys: read-only, a limit of this charge point \(50\)"),
        ({"localauthlistmaxlength": "5000"}, r"LocalAuthListMaxLength: read-only"),
    ],
)
def test_initial_override_errors_name_key_and_problem(initial, message):
    with pytest.raises(ValueError, match=message):
        Configuration(1, initial)


def test_number_of_connectors_must_be_positive():
    with pytest.raises(ValueError, match="NumberOfConnectors"):
        Configuration(0)


# --- Snapshot and restore ------------------------------------------------------------------


def test_snapshot_holds_central_system_changes_and_restore_reapplies_them():
    config = Configuration(1, {"HeartbeatInterval": "120"})
    config.change("HeartbeatInterval", "600")
    config.change("MeterValuesSampledData", "Energy.Active.Import.Register, Voltage")
    config.change("LocalPreAuthorize", "True")
    config.change("ResetRetries", "-1")
    saved = config.snapshot()
    assert saved == {
        "HeartbeatInterval": "600",
        "LocalPreAuthorize": "true",
        "MeterValuesSampledData": "Energy.Active.Import.Register,Voltage",
    }

    rebooted = Configuration(1, {"HeartbeatInterval": "120"})
    assert rebooted.restore(saved) == []
    assert rebooted.get_configuration() == config.get_configuration()
    assert rebooted.snapshot() == saved


def test_restore_skips_entries_that_no_longer_fit_with_warnings(config):
    warnings = config.restore(
        {"RetiredKey": "1", "NumberOfConnectors": "7", "HeartbeatInterval": "x", "ResetRetries": "4"}
    )
    assert len(warnings) == 3
    assert [w.split(":")[0] for w in warnings] == ["RetiredKey", "NumberOfConnectors", "HeartbeatInterval"]
    assert all(w.endswith("ignored") for w in warnings)
    assert config.get("NumberOfConnectors") == 2
    assert config.get("HeartbeatInterval") == 300
    assert config.snapshot() == {"ResetRetries": "4"}


def test_set_internal_value_supersedes_central_system_value_in_snapshot(config):
    config.change("HeartbeatInterval", "600")
    config.set_internal("HeartbeatInterval", "240")
    assert config.get("HeartbeatInterval") == 240
    assert config.snapshot() == {}


# --- Types -----------------------------------------------------------------------------------


def test_text_type_keeps_value():
    assert Text().normalise("Any text", lambda key: 0) == "Any text"
    assert Text().parse("Any text") == "Any text"


CANONICAL_INT = re.compile(r"0|[1-9][0-9]*")


@given(
    st.one_of(
        st.text(max_size=20),
        st.integers().map(str),
        st.from_regex(r"[-+ ]?0*[0-9]{1,12}\s?", fullmatch=True),
    )
)
def test_any_string_for_an_int_key_is_accepted_canonically_or_rejected(value):
    config = Configuration(1)
    status = config.change("MeterValueSampleInterval", value)
    assert status in ("Accepted", "Rejected")
    read_back = value_of(config, "MeterValueSampleInterval")
    if status == "Accepted":
        assert CANONICAL_INT.fullmatch(read_back)
        assert int(read_back) == int(value)
        assert 0 <= int(read_back) <= 86400
    else:
        assert read_back == "60"


def test_no_key_getconfiguration_reports_readonly_can_be_preset():
    """§9: a key marked R is the charge point's own; the installer's overrides cannot set it either."""
    readonly = [entry["key"] for entry in Configuration(1).get_configuration(None)[0] if entry["readonly"]]
    assert "LocalAuthListMaxLength" in readonly and "SupportedFeatureProfiles" in readonly
    for key in readonly:
        with pytest.raises(ValueError, match=f"{key}: read-only"):
            Configuration(1, {key: Configuration(1).get_configuration([key])[0][0]["value"]})
