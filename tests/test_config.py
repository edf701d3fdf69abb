"""The installer configuration: loading, validation messages, render, defaults."""

from __future__ import annotations

import dataclasses
import filecmp
import json
from pathlib import Path

import pytest

from evcp import config as cfg
from evcp.ocpp16 import configuration as ocpp_configuration
from evcp.config import ConfigError, load, loads, mock_defaults, render

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "evcp.example.toml"
BENCH = ROOT / "config" / "bench.toml"
PACKAGED_BENCH = ROOT / "controller" / "bench" / "bench.toml"

#: The smallest valid file, as section -> key -> TOML value text. Tethered, so that a Pi
#: connector needs no proximity pilot or lock (a socket outlet does: see test_socket_outlet_*).
MINIMAL = {
    "charge_point": {"id": '"CP-1"', "cable": '"tethered"'},
    "ocpp": {"csms_url": '"ws://127.0.0.1:9000/ocpp"'},
    "hardware": {"backend": '"mock"'},
}

PI_CONNECTOR = """
[[hardware.connectors]]
[hardware.connectors.relay]
pin = 17
"""


def toml(patch: dict[str, str | None] | None = None, tail: str = "") -> str:
    """MINIMAL with ``patch`` applied ("section.key" -> TOML text, None removes), then ``tail``."""
    sections = {name: dict(keys) for name, keys in MINIMAL.items()}
    for dotted, value in (patch or {}).items():
        section, _, key = dotted.rpartition(".")
        if value is None:
            sections[section].pop(key, None)
        else:
            sections.setdefault(section, {})[key] = value
    lines = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {value}" for key, value in keys.items()]
    return "\n".join(lines) + "\n" + tail


def write(tmp_path: Path, text: str, name: str = "evcp.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> cfg.Config:
    return load(write(tmp_path, text))


def error_of(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    assert err.file == str(path)
    assert str(err).startswith(f"{path}: {err.key}: " if err.key else f"{path}: ")
    return err


# (id, patch, tail, dotted key, words the problem must contain)
ERRORS = [
    # unknown keys, with the closest known key
    ("unknown key", {"ocpp.csms_ulr": '"ws://x/ocpp"'}, "", "ocpp.csms_ulr", ['did you mean "csms_url"?']),
    ("unknown key, case", {"charge_point.ID": '"x"'}, "", "charge_point.ID", ['did you mean "id"?']),
    ("unknown section", {"chargepoint.id": '"x"'}, "", "chargepoint", ['did you mean "charge_point"?']),
    ("key in the wrong section", {"api.state_dir": '"/tmp"'}, "", "api.state_dir",
     ['did you mean "storage.state_dir"?']),
    ("unknown key, no suggestion", {"logging.zzz": "1"}, "", "logging.zzz", ["unknown key", "level", "trace_file"]),
    ("derived key is not a file key", {"api.port": "8080"}, "", "api.port", ['comes from api.listen = "host:port"']),
    # required keys
    ("charge point id missing", {"charge_point.id": None}, "", "charge_point.id", ["missing", "id = "]),
    ("csms url missing", {"ocpp.csms_url": None}, "", "ocpp.csms_url", ["missing", "csms_url = "]),
    ("backend missing", {"hardware.backend": None}, "", "hardware.backend", ["missing", '"pi"', '"mock"']),
    # types
    ("string for int", {"charge_point.connectors": '"abc"'}, "", "charge_point.connectors",
     ['expected an integer, got "abc"']),
    ("bool is not an int", {"charge_point.connectors": "true"}, "", "charge_point.connectors",
     ["expected an integer, got true"]),
    ("float for int", {"charge_point.phases": "3.0"}, "", "charge_point.phases", ["expected an integer, got 3.0"]),
    ("string for float", {"charge_point.max_current_a": '"16"'}, "", "charge_point.max_current_a",
     ['expected a number, got "16"']),
    ("bool is not a float", {"ocpp.call_timeout_s": "true"}, "", "ocpp.call_timeout_s",
     ["expected a number, got true"]),
    ("nan is not a number", {"ocpp.call_timeout_s": "nan"}, "", "ocpp.call_timeout_s", ["expected a number"]),
    ("string for bool", {"bench.accept_all_tags": '"yes"'}, "", "bench.accept_all_tags",
     ['expected true or false, got "yes"']),
    ("int for string", {"charge_point.id": "12"}, "", "charge_point.id", ["expected a string, got 12"]),
    ("list expected", {"bench.id_tags": '"04A1"'}, "", "bench.id_tags", ["expected a list", '"04A1"']),
    ("list item type", {"bench.id_tags": '["04A1", 5]'}, "", "bench.id_tags[2]", ["expected a string, got 5"]),
    ("optional pin type", {}, PI_CONNECTOR + "feedback_pin = true\n", "hardware.connectors[1].relay.feedback_pin",
     ["expected an integer or false", "got true"]),
    ("empty path", {"storage.state_dir": '""'}, "", "storage.state_dir", ["expected a path", 'got ""']),
    # literal choices
    ("literal", {"charge_point.cable": '"tethred"'}, "", "charge_point.cable",
     ['"socket", "tethered"', 'got "tethred"', 'did you mean "tethered"?']),
    ("literal case", {"logging.level": '"info"'}, "", "logging.level", ['did you mean "INFO"?']),
    ("backend literal", {"hardware.backend": '"raspberry"'}, "", "hardware.backend", ['"mock", "pi"']),
    # ranges
    ("connectors 0", {"charge_point.connectors": "0"}, "", "charge_point.connectors", ["must be 1..8 (got 0)"]),
    ("connectors 9", {"charge_point.connectors": "9"}, "", "charge_point.connectors", ["must be 1..8 (got 9)"]),
    ("current low", {"charge_point.max_current_a": "5.9"}, "", "charge_point.max_current_a",
     ["must be 6..80 A (got 5.9)"]),
    ("current high", {"charge_point.max_current_a": "81"}, "", "charge_point.max_current_a",
     ["must be 6..80 A (got 81)"]),
    ("phases", {"charge_point.phases": "2"}, "", "charge_point.phases", ["must be 1 or 3 (got 2)"]),
    ("id empty", {"charge_point.id": '""'}, "", "charge_point.id", ["must not be empty"]),
    ("id too long", {"charge_point.id": '"' + "C" * 49 + '"'}, "", "charge_point.id", ["1..48 characters, not 49"]),
    ("id with a space", {"charge_point.id": '"CP 1"'}, "", "charge_point.id", ['not " " (got "CP 1")']),
    ("id with a slash", {"charge_point.id": '"site/CP1"'}, "", "charge_point.id", ['not "/"']),
    ("vendor length", {"charge_point.vendor": '"' + "v" * 21 + '"'}, "", "charge_point.vendor",
     ["1..20 characters, not 21"]),
    ("model length", {"charge_point.model": '"' + "m" * 21 + '"'}, "", "charge_point.model",
     ["1..20 characters, not 21"]),
    ("serial length", {"charge_point.serial_number": '"' + "s" * 26 + '"'}, "", "charge_point.serial_number",
     ["1..25 characters, not 26"]),
    ("timeout zero", {"ocpp.call_timeout_s": "0"}, "", "ocpp.call_timeout_s", ["must be more than 0 s (got 0)"]),
    ("reconnect order", {"ocpp.reconnect_min_s": "10", "ocpp.reconnect_max_s": "5"}, "", "ocpp.reconnect_max_s",
     ["at least ocpp.reconnect_min_s = 10 s", "got 5"]),
    ("pin too high", {}, PI_CONNECTOR.replace("17", "28"), "hardware.connectors[1].relay.pin",
     ["GPIO number 0..27 (got 28)"]),
    ("pin negative", {"hardware.reader.rst_pin": "-1"}, "", "hardware.reader.rst_pin", ["0..27 (got -1)"]),
    ("api port 0", {"api.listen": '"127.0.0.1:0"'}, "", "api.listen", ["port must be 1..65535", 'got "127.0.0.1:0"']),
    ("api port high", {"api.listen": '"127.0.0.1:65536"'}, "", "api.listen", ["port must be 1..65535"]),
    ("api no port", {"api.listen": '"8080"'}, "", "api.listen", ['expected "host:port"']),
    ("api bare ipv6", {"api.listen": '"::1:8080"'}, "", "api.listen", ["brackets"]),
    ("api bad ipv6", {"api.listen": '"[zz::1]:8080"'}, "", "api.listen", ["not an IPv6 address"]),
    ("bench csms listen", {"bench.csms_listen": '"localhost"'}, "", "bench.csms_listen", ['expected "host:port"']),
    ("poll interval", {"hardware.reader.poll_interval_s": "0.01"}, "", "hardware.reader.poll_interval_s",
     ["at least 0.05 s (got 0.01)"]),
    ("id tag too long", {"bench.id_tags": '["' + "A" * 21 + '"]'}, "", "bench.id_tags[1]",
     ["1..20 characters, not 21"]),
    ("mock power", {"hardware.mock.ev_power_w": "0"}, "", "hardware.mock.ev_power_w", ["more than 0 W"]),
    # the CSMS URL
    ("http url", {"ocpp.csms_url": '"http://csms/ocpp"'}, "", "ocpp.csms_url",
     ["ws:// or wss://", 'got "http://csms/ocpp"']),
    ("url without host", {"ocpp.csms_url": '"ws:///ocpp"'}, "", "ocpp.csms_url", ["no host"]),
    ("url with password", {"ocpp.csms_url": '"wss://cp:pw@csms/ocpp"'}, "", "ocpp.csms_url",
     ["ocpp.authorization_key"]),
    ("url bad port", {"ocpp.csms_url": '"ws://csms:99999/ocpp"'}, "", "ocpp.csms_url", ["not a valid URL"]),
    ("url ends with id", {"ocpp.csms_url": '"ws://csms/ocpp/CP-1"'}, "", "ocpp.csms_url",
     ["ends with charge_point.id", "remove it"]),
    # ocpp.keys
    ("ocpp key float", {"ocpp.keys.VendorThing": "1.5"}, "", "ocpp.keys.VendorThing",
     ["integer, true/false or a string", "got 1.5"]),
    ("ocpp key type", {"ocpp.keys.HeartbeatInterval": '"abc"'}, "", "ocpp.keys.HeartbeatInterval",
     ["expected a decimal integer", "abc"]),
    ("ocpp key range", {"ocpp.keys.HeartbeatInterval": "0"}, "", "ocpp.keys.HeartbeatInterval",
     ["expected 1..86400", "0"]),
    ("ocpp key list item", {"ocpp.keys.MeterValuesSampledData": '"Energy.Active.Import.Register,Temperature"'},
     "", "ocpp.keys.MeterValuesSampledData", ["'Temperature' is not one of"]),
    ("ocpp key unknown", {"ocpp.keys.VendorLedBrightness": "80"}, "", "ocpp.keys.VendorLedBrightness",
     ["unknown OCPP configuration key"]),
    ("ocpp key set by the controller", {"ocpp.keys.SupportedFeatureProfiles": '"Core"'}, "",
     "ocpp.keys.SupportedFeatureProfiles", ["read-only, set by the controller"]),
    ("ocpp key read-only limit", {"ocpp.keys.LocalAuthListMaxLength": "5000"}, "",
     "ocpp.keys.LocalAuthListMaxLength", ["read-only, a limit of this charge point (1000)"]),
    ("ocpp key read-only in any case", {"ocpp.keys.sendlocallistmaxlength": "2"}, "",
     "ocpp.keys.sendlocallistmaxlength", ["read-only, a limit of this charge point (250)"]),
    ("ocpp key twice", {"ocpp.keys.HeartbeatInterval": "60", "ocpp.keys.heartbeatinterval": "90"}, "",
     "ocpp.keys.heartbeatinterval", ["the same key as ocpp.keys.HeartbeatInterval"]),
    ("ocpp key bool type", {"ocpp.keys.LocalPreAuthorize": "1"}, "", "ocpp.keys.LocalPreAuthorize",
     ["expected true or false (got '1')"]),
    ("ocpp key typo", {"ocpp.keys.HeartBeatIntervall": "300"}, "", "ocpp.keys.HeartBeatIntervall",
     ["unknown OCPP configuration key", 'did you mean "HeartbeatInterval"?']),
    ("ocpp key set elsewhere", {"ocpp.keys.NumberOfConnectors": "2"}, "", "ocpp.keys.NumberOfConnectors",
     ["read-only; set charge_point.connectors instead"]),
    ("ocpp authorization key", {"ocpp.keys.AuthorizationKey": '"x"'}, "", "ocpp.keys.AuthorizationKey",
     ["set ocpp.authorization_key instead"]),
    # each protocol's section with its protocol only, never silently unused
    ("1.6 key under 2.0.1", {"ocpp.version": '"2.0.1"', "ocpp.keys.HeartbeatInterval": "60"}, "",
     "ocpp.keys.HeartbeatInterval", ['ocpp.version is "2.0.1"', '"OCPPCommCtrlr.HeartbeatInterval" = 60']),
    ("1.6 sample interval under 2.0.1", {"ocpp.version": '"2.0.1"', "ocpp.keys.MeterValueSampleInterval": "10"},
     "", "ocpp.keys.MeterValueSampleInterval", ['[ocpp.variables]: "SampledDataCtrlr.TxUpdatedInterval" = 10']),
    ("1.6 key without a 2.0.1 equivalent", {"ocpp.version": '"2.0.1"', "ocpp.keys.ResetRetries": "2"}, "",
     "ocpp.keys.ResetRetries", ["no equivalent", 'ocpp.version = "auto"']),
    ("2.0.1 variable under 1.6", {"ocpp.variables.TxCtrlr.StopTxOnInvalidId": "false"}, "",
     "ocpp.variables.TxCtrlr.StopTxOnInvalidId",
     ['ocpp.version is "1.6"', "[ocpp.keys]: StopTransactionOnInvalidId = false", '"2.0.1" or "auto"']),
    ("2.0.1 variable without a 1.6 equivalent", {"ocpp.variables.AuthCacheCtrlr.LifeTime": "60"}, "",
     "ocpp.variables.AuthCacheCtrlr.LifeTime", ["OCPP 1.6 has no equivalent"]),
    # [ocpp.variables], checked as SetVariables would
    ("variable unknown", {"ocpp.version": '"2.0.1"', "ocpp.variables.OCPPCommCtrlr.HeartbeatIntervall": "60"}, "",
     "ocpp.variables.OCPPCommCtrlr.HeartbeatIntervall",
     ["no such variable", 'did you mean "OCPPCommCtrlr.HeartbeatInterval"?']),
    ("variable without its instance", {"ocpp.version": '"2.0.1"', "ocpp.variables.OCPPCommCtrlr.MessageTimeout": "5"},
     "", "ocpp.variables.OCPPCommCtrlr.MessageTimeout", ['did you mean "OCPPCommCtrlr.MessageTimeout.Default"?']),
    ("variable unknown component", {"ocpp.version": '"2.0.1"', "ocpp.variables.NoCtrlr.Enabled": "true"}, "",
     "ocpp.variables.NoCtrlr.Enabled", ["no such variable"]),
    ("variable range", {"ocpp.version": '"2.0.1"', "ocpp.variables.TxCtrlr.MaxEnergyOnInvalidId": "-1"}, "",
     "ocpp.variables.TxCtrlr.MaxEnergyOnInvalidId", ["must be at least 0", 'got "-1"']),
    ("variable boolean", {"ocpp.version": '"2.0.1"', "ocpp.variables.TxCtrlr.StopTxOnInvalidId": '"no"'}, "",
     "ocpp.variables.TxCtrlr.StopTxOnInvalidId", ["must be true or false"]),
    ("variable member", {"ocpp.version": '"2.0.1"', "ocpp.variables.TxCtrlr.TxStartPoint": '["DataSigned"]'}, "",
     "ocpp.variables.TxCtrlr.TxStartPoint", ["unknown member DataSigned"]),
    ("variable type", {"ocpp.version": '"2.0.1"', "ocpp.variables.TxCtrlr.TxStartPoint": "[1]"}, "",
     "ocpp.variables.TxCtrlr.TxStartPoint", ["a list of strings", "got [1]"]),
    ("variable read-only", {"ocpp.version": '"2.0.1"', "ocpp.variables.SmartChargingCtrlr.ProfileStackLevel": "3"},
     "", "ocpp.variables.SmartChargingCtrlr.ProfileStackLevel", ["read-only", "(10)"]),
    ("variable set elsewhere", {"ocpp.version": '"2.0.1"', "ocpp.variables.ChargingStation.Model": '"x"'}, "",
     "ocpp.variables.ChargingStation.Model", ["set charge_point.model instead"]),
]


@pytest.mark.parametrize("spec", [spec for spec in ocpp_configuration.KEYS if spec.access.readonly],
                         ids=lambda spec: spec.name)
def test_every_read_only_ocpp_key_is_refused_even_with_its_own_value(tmp_path, spec):
    # OCPP 1.6 §9: what GetConfiguration reports as readonly is the charger's, never the installer's.
    own_value = spec.default_for(1)
    err = error_of(tmp_path, toml({f"ocpp.keys.{spec.name}": json.dumps(own_value)}))
    assert err.key == f"ocpp.keys.{spec.name}"
    assert err.problem.startswith("read-only"), err.problem


# Errors about connector tables, pins and meters: full files after MINIMAL's sections.
CONNECTOR_ERRORS = [
    ("pi without tables", {"hardware.backend": '"pi"', "charge_point.connectors": "2"}, "",
     "hardware.connectors", ["missing", "charge_point.connectors = 2"]),
    ("pi with too few tables", {"hardware.backend": '"pi"', "charge_point.connectors": "2"}, PI_CONNECTOR,
     "hardware.connectors", ["1 [[hardware.connectors]] table(s)", "charge_point.connectors = 2"]),
    ("mock with too many tables", {}, PI_CONNECTOR * 2, "hardware.connectors",
     ["2 [[hardware.connectors]] table(s)", "charge_point.connectors = 1"]),
    ("connectors as a number", {"hardware.connectors": "2"}, "", "hardware.connectors",
     ["expected [[hardware.connectors]] tables, got 2", "charge_point.connectors"]),
    ("unknown connector key", {}, "[[hardware.connectors]]\n[hardware.connectors.realy]\npin = 4\n",
     "hardware.connectors[1].realy", ['did you mean "relay"?']),
    ("same pin on two connectors", {"hardware.backend": '"pi"', "charge_point.connectors": "2"},
     PI_CONNECTOR + PI_CONNECTOR.replace("17", "5") + "[hardware.connectors.pilot]\nvehicle_pin = 17\n"
     "pwm_channel = 1\n",
     "hardware.connectors[2].pilot.vehicle_pin", ["GPIO17 is already used by hardware.connectors[1].relay.pin"]),
    ("feedback on a pilot pin", {"hardware.backend": '"pi"'}, PI_CONNECTOR + "feedback_pin = 22\n",
     "hardware.connectors[1].pilot.vehicle_pin",
     ["GPIO22 is already used by hardware.connectors[1].relay.feedback_pin"]),
    ("reader reset on a relay pin", {"hardware.backend": '"pi"', "hardware.reader.backend": '"mfrc522"'},
     PI_CONNECTOR.replace("17", "25"), "hardware.connectors[1].relay.pin",
     ["GPIO25 is already used by hardware.reader.rst_pin"]),
    ("relay on an SPI line", {"hardware.backend": '"pi"', "hardware.reader.backend": '"mfrc522"'},
     PI_CONNECTOR.replace("17", "10"), "hardware.connectors[1].relay.pin",
     ["GPIO10 is already used by hardware.reader.spi_bus (SPI0 MOSI)"]),
    ("same PWM on two connectors", {"hardware.backend": '"pi"', "charge_point.connectors": "2"},
     PI_CONNECTOR + "[hardware.connectors.pilot]\npwm_chip = 0\npwm_channel = 0\n"
     + PI_CONNECTOR.replace("17", "5") + "[hardware.connectors.pilot]\nvehicle_pin = 6\n"
     "charge_pin = 7\nfault_pin = 8\npwm_pin = 12\npwm_chip = 0\npwm_channel = 0\n",
     "hardware.connectors[2].pilot.pwm_channel", ["PWM channel 0 of pwmchip0 is already used by "
                                                  "hardware.connectors[1].pilot.pwm_channel"]),
    ("same PWM pin on two connectors", {"hardware.backend": '"pi"', "charge_point.connectors": "2"},
     PI_CONNECTOR + PI_CONNECTOR.replace("17", "5") + "[hardware.connectors.pilot]\nvehicle_pin = 6\n"
     "charge_pin = 7\nfault_pin = 8\n",
     "hardware.connectors[2].pilot.pwm_pin", ["GPIO18 is already used by hardware.connectors[1].pilot.pwm_pin"]),
    ("pilot board without fault or short input", {"hardware.backend": '"pi"'},
     PI_CONNECTOR + "[hardware.connectors.pilot]\nfault_pin = false\n",
     "hardware.connectors[1].pilot.fault_pin", ["reads a CP shorted to PE as state C", "short_pin"]),
    ("PWM on a pin without hardware PWM", {"hardware.backend": '"pi"'},
     PI_CONNECTOR + "[hardware.connectors.pilot]\npwm_pin = 17\n",
     "hardware.connectors[1].pilot.pwm_pin", ["must be 12, 13, 18 or 19"]),
    ("PWM chip neither a number nor auto", {"hardware.backend": '"pi"'},
     PI_CONNECTOR + "[hardware.connectors.pilot]\npwm_chip = \"pwmchip2\"\n",
     "hardware.connectors[1].pilot.pwm_chip", ['expected an integer or "auto", got "pwmchip2"']),
    ("auto PWM in the simulation", {},
     "[[hardware.connectors]]\n[hardware.connectors.pilot]\npwm_chip = \"auto\"\n",
     "hardware.connectors[1].pilot.pwm_chip", ["simulation"]),
    ("ADC scale of a 10-bit chip on a 12-bit chip", {},
     "[[hardware.connectors]]\n[hardware.connectors.pilot]\nbackend = \"adc\"\nadc_chip = \"mcp3208\"\n",
     "hardware.connectors[1].pilot.volts_per_count", ["12-bit mcp3208", "24/4095"]),
    ("mcp3004 channel", {}, "[[hardware.connectors]]\n[hardware.connectors.pilot]\nbackend = \"adc\"\n"
     "adc_chip = \"mcp3004\"\nadc_channel = 5\n", "hardware.connectors[1].pilot.adc_channel",
     ["mcp3004 has channels 0..3 (got 5)"]),
    ("custom meter without registers", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\n"
     "model = \"custom\"\n", "hardware.connectors[1].meter.registers", ['required with model = "custom"']),
    ("registers with a known model", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\n"
     "model = \"sdm120\"\n[hardware.connectors.meter.registers]\n"
     "power_w = { address = 12, type = \"float32\", function = 4 }\n",
     "hardware.connectors[1].meter.registers", ['only used with model = "custom"', '"sdm120"']),
    ("unknown register quantity", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\n"
     "model = \"custom\"\n[hardware.connectors.meter.registers]\npower = { address = 12 }\n",
     "hardware.connectors[1].meter.registers.power", ['did you mean "power_w"?']),
    ("unknown register field", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\n"
     "model = \"custom\"\n[hardware.connectors.meter.registers]\npower_w = { adress = 12 }\n",
     "hardware.connectors[1].meter.registers.power_w.adress", ['did you mean "address"?']),
    ("bad register value", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\n"
     "model = \"custom\"\n[hardware.connectors.meter.registers]\n"
     "energy_import_wh = { address = 72, type = \"float32\", function = 4 }\n"
     "power_w = { address = 70000, type = \"float32\", function = 4 }\n",
     "hardware.connectors[1].meter.registers.power_w.address", ["0..65535", "70000"]),
    ("custom map without power", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\n"
     "model = \"custom\"\n[hardware.connectors.meter.registers]\n"
     "energy_import_wh = { address = 72, type = \"float32\", function = 4 }\n",
     "hardware.connectors[1].meter.registers.power_w", ["missing"]),
    ("energy the model lacks", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\n"
     "model = \"abb-b23\"\nenergy = \"total\"\n", "hardware.connectors[1].meter.energy",
     ["no energy_total_wh register", 'got "total"']),
    ("meter port", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\nport = 0\n",
     "hardware.connectors[1].meter.port", ["must be 1..65535 (got 0)"]),
    ("baudrate", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\nbaudrate = 14400\n",
     "hardware.connectors[1].meter.baudrate", ["1200, 2400", "115200", "(got 14400)"]),
    ("stopbits", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\nstopbits = 3\n",
     "hardware.connectors[1].meter.stopbits", ["must be 1 or 2 (got 3)"]),
    ("device id", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\ndevice_id = 248\n",
     "hardware.connectors[1].meter.device_id", ["must be 1..247 (got 248)"]),
    ("parity", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\nparity = \"n\"\n",
     "hardware.connectors[1].meter.parity", ['did you mean "N"?']),
    ("meter timeout", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\ntimeout_s = -1\n",
     "hardware.connectors[1].meter.timeout_s", ["more than 0 s (got -1)"]),
    ("meter poll", {}, "[[hardware.connectors]]\n[hardware.connectors.meter]\npoll_interval_s = 0.04\n",
     "hardware.connectors[1].meter.poll_interval_s", ["at least 0.05 s (got 0.04)"]),
]


@pytest.mark.parametrize(
    "patch, tail, key, words", [case[1:] for case in ERRORS + CONNECTOR_ERRORS],
    ids=[case[0] for case in ERRORS + CONNECTOR_ERRORS],
)
def test_error_names_file_key_and_problem(tmp_path, patch, tail, key, words):
    err = error_of(tmp_path, toml(patch, tail))
    assert err.key == key, str(err)
    assert words, "a case must say what the message contains"
    for word in words:
        assert word in err.problem, str(err)
    assert "evcp.toml" in str(err)


def test_section_must_be_a_table(tmp_path):
    err = error_of(tmp_path, "api = 3\n" + toml())
    assert (err.key, err.problem) == ("api", "expected a table, got 3")


def test_syntax_error_names_the_line(tmp_path):
    text = toml() + "[api]\nlisten = 127.0.0.1:8080\n"
    err = error_of(tmp_path, text)
    line = text.splitlines().index("listen = 127.0.0.1:8080") + 1
    assert f"line {line}" in str(err)
    assert "TOML syntax error" in err.problem


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.toml")
    assert "absent.toml" in str(info.value)
    assert "cannot read" in info.value.problem


def test_the_example_loads_as_a_pi_charger():
    config = load(EXAMPLE)
    assert config.source == EXAMPLE
    assert config.hardware.backend == "pi"
    assert config.charge_point.connectors == len(config.hardware.connectors) == 1
    (connector,) = config.hardware.connectors
    assert (connector.relay.pin, connector.relay.feedback_pin) == (17, 27)
    pilot = connector.pilot
    assert (pilot.backend, pilot.pwm_pin, pilot.pwm_chip, pilot.pwm_channel) == ("gpio", 18, "auto", "auto")
    meter = connector.meter
    assert (meter.backend, meter.model, meter.serial_port) == ("modbus-rtu", "sdm630", "/dev/ttyUSB0")
    assert (meter.baudrate, meter.parity, meter.stopbits) == (9600, "N", 1)
    reader = config.hardware.reader
    assert (reader.backend, reader.spi_bus, reader.spi_device) == ("mfrc522", 0, 1)


def test_pwm_chip_and_channel_numbers_still_load(tmp_path):
    tail = PI_CONNECTOR + "[hardware.connectors.pilot]\npwm_chip = 2\npwm_channel = 2\n"
    pilot = load_text(tmp_path, toml({"hardware.backend": '"pi"'}, tail)).hardware.connectors[0].pilot
    assert (pilot.pwm_pin, pilot.pwm_chip, pilot.pwm_channel) == (18, 2, 2)


def test_the_example_shows_every_key():
    text = EXAMPLE.read_text()
    for key in cfg._all_keys():
        leaf = key.rpartition(".")[2]
        assert f"{leaf} =" in text or f"[{key}]" in text or f"[[{key}]]" in text, key


def test_the_bench_loads():
    config = load(BENCH)
    assert config.charge_point.id == "CP-BENCH-01"
    assert config.ocpp.csms_url == "ws://127.0.0.1:9000/ocpp"
    assert config.hardware.backend == "mock"
    assert (config.api.host, config.api.port) == ("127.0.0.1", 8080)
    assert config.storage.state_dir == ROOT / ".bench-state"
    assert config.hardware.connectors == mock_defaults(config.charge_point.connectors)


def test_the_packaged_bench_is_a_copy():
    assert filecmp.cmp(BENCH, PACKAGED_BENCH, shallow=False)
    assert load(PACKAGED_BENCH).charge_point.id == "CP-BENCH-01"


def test_defaults(tmp_path):
    config = load_text(tmp_path, toml({"charge_point.cable": None}))
    assert config.charge_point == cfg.ChargePointConfig(id="CP-1")
    assert config.charge_point.cable == "socket"
    assert config.ocpp == cfg.OcppConfig(csms_url="ws://127.0.0.1:9000/ocpp")
    assert config.api == cfg.ApiConfig()
    assert config.storage.state_dir == Path("/var/lib/evcp")
    assert config.logging == cfg.LoggingConfig()
    assert config.bench == cfg.BenchConfig()
    assert config.hardware.reader == cfg.ReaderConfig()
    assert config.trace_file == Path("/var/lib/evcp/ocpp-trace.log")


def _pins(connector: cfg.ConnectorHardware) -> list[int | None]:
    relay, pilot = connector.relay, connector.pilot
    pins = [relay.pin, relay.feedback_pin, pilot.vehicle_pin, pilot.charge_pin, pilot.fault_pin, pilot.short_pin]
    lock = connector.lock
    return pins + ([lock.lock_pin, lock.feedback_pin] if lock.backend == "gpio" else [])


def test_mock_default_pins_never_collide():
    for count in range(1, cfg.MAX_CONNECTORS + 1):
        connectors = mock_defaults(count)
        pins = [pin for c in connectors for pin in _pins(c) if pin is not None]
        assert len(set(pins)) == len(pins) == {1: 8, 2: 8, 3: 8, 4: 6}.get(count, 3) * count
        assert all(4 <= pin <= 27 for pin in pins)
        assert all(c.meter.backend == "none" for c in connectors)


def test_mock_default_pin_blocks():
    assert [_pins(c) for c in mock_defaults(3)] == [
        [4, 5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17, 18, 19], [20, 21, 22, 23, 24, 25, 26, 27]]
    assert all(c.pp.backend == "adc" for c in mock_defaults(8))
    assert [_pins(c) for c in mock_defaults(4)] == [
        [4, 5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15], [16, 17, 18, 19, 20, 21], [22, 23, 24, 25, 26, 27]]
    assert _pins(mock_defaults(8)[7]) == [25, None, 26, 27, None, None]
    with pytest.raises(ValueError):
        mock_defaults(9)


def test_mock_without_tables_gets_a_block_per_connector(tmp_path):
    config = load_text(tmp_path, toml({"charge_point.connectors": "8"}))
    assert config.hardware.connectors == mock_defaults(8, tethered=True)


def test_a_simulated_socket_outlet_has_a_proximity_pilot_and_a_lock_a_tethered_cable_neither(tmp_path):
    socket = load_text(tmp_path, toml({"charge_point.cable": '"socket"'})).hardware.connectors[0]
    assert (socket.pp.backend, socket.lock.backend) == ("adc", "gpio")
    tethered = load_text(tmp_path, toml()).hardware.connectors[0]
    assert (tethered.pp.backend, tethered.lock.backend) == ("none", "none")


def test_mock_tables_fill_in_from_the_blocks(tmp_path):
    tail = "[[hardware.connectors]]\n[[hardware.connectors]]\n[hardware.connectors.relay]\nfeedback_pin = 2\n"
    config = load_text(tmp_path, toml({"charge_point.connectors": "2"}, tail))
    first, second = config.hardware.connectors
    assert first == mock_defaults(2, tethered=True)[0]
    assert second.relay == cfg.RelayConfig(pin=12, feedback_pin=2)
    assert second.pilot == mock_defaults(2, tethered=True)[1].pilot


def test_pi_tables_fill_in_from_the_field_defaults(tmp_path):
    config = load_text(tmp_path, toml({"hardware.backend": '"pi"'}, "[[hardware.connectors]]\n"))
    assert config.hardware.connectors == (cfg.ConnectorHardware(),)


def test_optional_pin_false_means_not_wired(tmp_path):
    tail = "[[hardware.connectors]]\n[hardware.connectors.pilot]\nfault_pin = false\nshort_pin = 16\n"
    config = load_text(tmp_path, toml({"hardware.backend": '"pi"'}, tail))
    assert config.hardware.connectors[0].pilot.fault_pin is None


@pytest.mark.parametrize(
    "listen, host, port",
    [("0.0.0.0:80", "0.0.0.0", 80), ("[::1]:8080", "::1", 8080), ("[::]:443", "::", 443),
     ("charger.local:9999", "charger.local", 9999)],
)
def test_api_listen(tmp_path, listen, host, port):
    api = load_text(tmp_path, toml({"api.listen": f'"{listen}"', "api.password": '"a long secret"'})).api
    assert (api.listen, api.host, api.port) == (listen, host, port)


def test_relative_paths_start_at_the_config_file(tmp_path):
    (tmp_path / "etc").mkdir()
    text = toml({"storage.state_dir": '"../state"', "logging.trace_file": '"trace.log"'})
    config = load(write(tmp_path / "etc", text))
    assert config.storage.state_dir == tmp_path / "state"
    assert config.logging.trace_file == tmp_path / "etc" / "trace.log"
    assert config.trace_file == tmp_path / "etc" / "trace.log"


def test_absolute_paths_stay(tmp_path):
    config = load_text(tmp_path, toml({"storage.state_dir": '"/srv/evcp"'}))
    assert config.storage.state_dir == Path("/srv/evcp")


def test_ocpp_keys_are_strings_as_get_configuration_shows_them(tmp_path):
    patch = {
        "ocpp.keys.HeartbeatInterval": "300",
        "ocpp.keys.LocalPreAuthorize": "true",
        "ocpp.keys.AuthorizeRemoteTxRequests": "false",
        "ocpp.keys.MeterValuesSampledData": '"Energy.Active.Import.Register, Power.Active.Import"',
        "ocpp.keys.connectiontimeout": '"0090"',
    }
    keys = load_text(tmp_path, toml(patch)).ocpp.keys
    assert keys == {
        "HeartbeatInterval": "300",
        "LocalPreAuthorize": "true",
        "AuthorizeRemoteTxRequests": "false",
        "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import",
        "ConnectionTimeOut": "90",
    }


def test_ocpp_variables_are_text_by_their_names_however_the_toml_writes_them(tmp_path):
    text = toml({"ocpp.version": '"2.0.1"'}, """
[ocpp.variables]
"OCPPCommCtrlr.HeartbeatInterval" = 60
SampledDataCtrlr.TxUpdatedInterval = 10
OCPPCommCtrlr.MessageAttempts.TransactionEvent = 5
SmartChargingCtrlr.LimitChangeSignificance = 2.5
[ocpp.variables.TxCtrlr]
StopTxOnInvalidId = false
TxStartPoint = ["EVConnected", "Authorized"]
""")
    assert load_text(tmp_path, text).ocpp.variables == {
        "OCPPCommCtrlr.HeartbeatInterval": "60",
        "SampledDataCtrlr.TxUpdatedInterval": "10",
        "OCPPCommCtrlr.MessageAttempts.TransactionEvent": "5",
        "SmartChargingCtrlr.LimitChangeSignificance": "2.5",
        "TxCtrlr.StopTxOnInvalidId": "false",
        "TxCtrlr.TxStartPoint": "EVConnected,Authorized",
    }


def test_auto_takes_both_sections_each_for_its_protocol(tmp_path):
    config = load_text(tmp_path, toml({"ocpp.version": '"auto"', "ocpp.keys.HeartbeatInterval": "60",
                                       "ocpp.variables.OCPPCommCtrlr.HeartbeatInterval": "30"}))
    assert (config.ocpp.keys, config.ocpp.variables) == ({"HeartbeatInterval": "60"},
                                                         {"OCPPCommCtrlr.HeartbeatInterval": "30"})


def test_the_1_6_equivalents_name_variables_of_the_device_model_and_keys_of_the_1_6_table():
    from evcp.ocpp16.configuration import KEYS
    from evcp.ocpp201.device_model import OCPP16_EQUIVALENTS, station_device_model

    model = station_device_model(load(BENCH))
    assert {spec.name for spec in KEYS} >= set(OCPP16_EQUIVALENTS)
    assert set(model.names()) >= set(OCPP16_EQUIVALENTS.values())


@pytest.mark.parametrize("version, keys, variables", [
    ("1.6", {"HeartbeatInterval": "60", "MeterValueSampleInterval": "10"}, {}),
    ("2.0.1", {}, {"OCPPCommCtrlr.HeartbeatInterval": "60", "SampledDataCtrlr.TxUpdatedInterval": "10"}),
    ("auto", {"HeartbeatInterval": "60", "MeterValueSampleInterval": "10"},
     {"OCPPCommCtrlr.HeartbeatInterval": "60", "SampledDataCtrlr.TxUpdatedInterval": "10"}),
])
def test_with_version_keeps_the_benchs_cadence_in_either_protocol(version, keys, variables):
    """``evcp bench --ocpp``: bench.toml's [ocpp.keys] carry over to their 2.0.1 equivalents."""
    config = cfg.with_version(load(BENCH), version)
    assert (config.ocpp.version, config.ocpp.keys, config.ocpp.variables) == (version, keys, variables)


def test_with_version_carries_variables_back_to_1_6_and_keeps_what_the_file_sets_itself(tmp_path):
    config = load_text(tmp_path, toml({"ocpp.version": '"auto"', "ocpp.keys.HeartbeatInterval": "60",
                                       "ocpp.variables.OCPPCommCtrlr.HeartbeatInterval": "30",
                                       "ocpp.variables.TxCtrlr.StopTxOnInvalidId": "false"}))
    as_1_6 = cfg.with_version(config, "1.6")
    assert (as_1_6.ocpp.keys, as_1_6.ocpp.variables) == (
        {"HeartbeatInterval": "60", "StopTransactionOnInvalidId": "false"}, {})
    as_2_0_1 = cfg.with_version(config, "2.0.1")
    assert (as_2_0_1.ocpp.keys, as_2_0_1.ocpp.variables) == (
        {}, {"OCPPCommCtrlr.HeartbeatInterval": "30", "TxCtrlr.StopTxOnInvalidId": "false"})


@pytest.mark.parametrize("patch, version, key, words", [
    ({"ocpp.keys.ResetRetries": "2"}, "2.0.1", "ocpp.keys.ResetRetries", ["without an OCPP 2.0.1 equivalent"]),
    ({"ocpp.keys.WebSocketPingInterval": "7200"}, "2.0.1", "ocpp.keys.WebSocketPingInterval",
     ["as OCPPCommCtrlr.WebSocketPingInterval", "must be at most 3600"]),
    ({"ocpp.version": '"2.0.1"', "ocpp.variables.AuthCacheCtrlr.LifeTime": "60"}, "1.6",
     "ocpp.variables.AuthCacheCtrlr.LifeTime", ["without an OCPP 1.6 equivalent"]),
])
def test_with_version_names_what_cannot_carry_over(tmp_path, patch, version, key, words):
    config = load_text(tmp_path, toml(patch))
    with pytest.raises(ConfigError) as error:
        cfg.with_version(config, version)
    assert error.value.key == key and all(word in error.value.problem for word in words), str(error.value)


CUSTOM_METER = """
[[hardware.connectors]]
[hardware.connectors.relay]
pin = 5
[hardware.connectors.pilot]
vehicle_pin = 6
charge_pin = 12
fault_pin = false
short_pin = 16
[hardware.connectors.meter]
backend = "modbus-tcp"
model = "custom"
host = "192.168.1.50"
[hardware.connectors.meter.registers]
energy_import_wh = { address = 72, type = "float32", function = 4, scale = 1000.0 }
power_w = { address = 52, type = "int32", function = 3, scale = 0.01, word_order = "little" }
[[hardware.connectors]]
"""

FULL_PATCH = {
    "charge_point.connectors": "2",
    "charge_point.serial_number": '"SN-\\"quoted\\"-1"',
    "ocpp.authorization_key": '"s3cr3t-basic-auth"',
    "ocpp.keys.HeartbeatInterval": "120",
    "ocpp.keys.StopTransactionOnInvalidId": "true",
    "ocpp.keys.MeterValuesSampledData": '"Voltage.L1,Current.Import.L1"',
    "ocpp.version": '"auto"',
    "ocpp.variables.OCPPCommCtrlr.HeartbeatInterval": "90",
    "ocpp.variables.TxCtrlr.TxStopPoint": '["EVConnected", "Authorized"]',
    "hardware.backend": '"pi"',
    "hardware.reader.backend": '"mfrc522"',
    "api.listen": '"[::1]:8081"',
    "logging.trace_file": '"/var/log/evcp/trace.log"',
    "bench.id_tags": '["04A1B2C3", "tab\\there"]',
}


def _full_config(tmp_path) -> tuple[Path, cfg.Config]:
    tail = CUSTOM_METER + "[hardware.connectors.pilot]\npwm_pin = 19\npwm_channel = 1\n"
    path = write(tmp_path, toml(FULL_PATCH, tail))
    return path, load(path)


def test_full_config_loads(tmp_path):
    _, config = _full_config(tmp_path)
    first, second = config.hardware.connectors
    assert first.meter.registers["power_w"] == {
        "address": 52, "type": "int32", "function": 3, "scale": 0.01, "word_order": "little"}
    assert second.relay == cfg.RelayConfig()
    assert config.charge_point.serial_number == 'SN-"quoted"-1'


@pytest.mark.parametrize("source", ["example", "bench", "full"])
def test_render_round_trip(tmp_path, source):
    if source == "full":
        path, config = _full_config(tmp_path)
        secrets = ["s3cr3t-basic-auth"]
    else:
        path = write(tmp_path, (EXAMPLE if source == "example" else BENCH).read_text(), "copy.toml")
        config, secrets = load(path), []
    text = render(config)
    for secret in secrets:
        assert secret not in text
        text = text.replace(f'"{cfg.MASK}"', f'"{secret}"', 1)
    assert cfg.MASK not in text
    path.write_text(text)
    assert load(path) == config


def test_render_masks_secrets_and_shows_every_key(tmp_path):
    _, config = _full_config(tmp_path)
    text = render(config)
    assert "s3cr3t" not in text
    assert f'authorization_key = "{cfg.MASK}"' in text
    assert "HeartbeatInterval = 120" in text and "StopTransactionOnInvalidId = true" in text
    assert 'MeterValuesSampledData = "Voltage.L1,Current.Import.L1"' in text
    assert '[ocpp.variables]\n"OCPPCommCtrlr.HeartbeatInterval" = 90\n"TxCtrlr.TxStopPoint" = "EVConnected,Authorized"' \
        in text
    for key in cfg._all_keys():
        section, _, leaf = key.rpartition(".")
        if key == "ocpp.authorization_key" or leaf in ("relay", "pilot", "meter", "reader", "mock", "keys",
                                                        "variables"):
            continue
        if dataclasses.is_dataclass(getattr(config, key, None)):
            continue
        assert f"\n{leaf} = " in text or f"[{key}]" in text or f"# {leaf} is not set" in text, key


def test_render_masks_keys_named_like_secrets(tmp_path):
    config = load_text(tmp_path, toml())
    ocpp = dataclasses.replace(config.ocpp, keys={"VendorPassword": "hunter2", "HeartbeatInterval": "60"})
    text = render(dataclasses.replace(config, ocpp=ocpp))
    assert "hunter2" not in text
    assert f'VendorPassword = "{cfg.MASK}"' in text and "HeartbeatInterval = 60" in text


def test_render_shows_unset_keys_as_comments(tmp_path):
    text = render(load_text(tmp_path, toml({"hardware.backend": '"pi"'}, "[[hardware.connectors]]\n")))
    assert "# authorization_key is not set" in text
    assert "# serial_number is not set" in text
    assert "# trace_file is not set" in text
    assert "feedback_pin = false" in text and "short_pin = false" in text


def test_loads_matches_load(tmp_path):
    path = write(tmp_path, toml())
    assert loads(path.read_text(), path) == load(path)


def test_an_api_beyond_localhost_needs_a_password(tmp_path):
    base = ('[charge_point]\nid = "X"\n[ocpp]\ncsms_url = "ws://h/ocpp"\n[hardware]\nbackend = "mock"\n'
            '[api]\nlisten = "0.0.0.0:8080"\n')
    path = tmp_path / "evcp.toml"
    path.write_text(base)
    with pytest.raises(ConfigError) as error:
        load(path)
    assert error.value.key == "api.password" and "0.0.0.0:8080" in str(error.value)
    path.write_text(base + 'password = "long enough"\n')
    assert load(path).api.password == "long enough"
    path.write_text(base.replace("0.0.0.0", "127.0.0.1"))
    assert load(path).api.password is None


@pytest.mark.parametrize("ocpp_lines, key, problem", [
    ('csms_url = "ws://h/ocpp"\nsecurity_profile = 2\nauthorization_key = "0123456789abcdef"\n', "ocpp.csms_url",
     "must start with wss:// with ocpp.security_profile = 2"),
    ('csms_url = "ws://h/ocpp"\nsecurity_profile = 1\n', "ocpp.authorization_key",
     "required with ocpp.security_profile = 1"),
    ('csms_url = "wss://h/ocpp"\nsecurity_profile = 3\n', "ocpp.client_cert_file",
     "required with ocpp.security_profile = 3"),
])
def test_a_security_profile_whose_requirements_are_missing_names_the_key_to_fix(tmp_path, ocpp_lines, key, problem):
    path = tmp_path / "evcp.toml"
    path.write_text(f'[charge_point]\nid = "X"\n[ocpp]\n{ocpp_lines}[hardware]\nbackend = "mock"\n')
    with pytest.raises(ConfigError) as error:
        load(path)
    assert error.value.key == key and problem in str(error.value)


SOCKET_PI = {"hardware.backend": '"pi"', "charge_point.cable": '"socket"'}


def test_socket_outlet_on_a_pi_needs_the_proximity_pilot(tmp_path):
    err = error_of(tmp_path, toml(SOCKET_PI, PI_CONNECTOR))
    assert err.key == "hardware.connectors[1].pp.backend"
    assert "proximity pilot" in str(err) and "tethered" in str(err)


def test_socket_outlet_on_a_pi_needs_a_lock(tmp_path):
    err = error_of(tmp_path, toml(SOCKET_PI, PI_CONNECTOR + '[hardware.connectors.pp]\nbackend = "adc"\n'))
    assert err.key == "hardware.connectors[1].lock.backend"


def test_socket_outlet_on_a_pi_with_pp_and_lock_loads(tmp_path):
    tail = PI_CONNECTOR + '[hardware.connectors.pp]\nbackend = "adc"\n[hardware.connectors.lock]\nbackend = "gpio"\n'
    connector = load_text(tmp_path, toml(SOCKET_PI, tail)).hardware.connectors[0]
    assert (connector.pp.adc_channel, connector.lock.lock_pin, connector.lock.unlock_pin) == (1, 5, 6)


def test_a_motor_lock_needs_its_unlock_pin(tmp_path):
    tail = PI_CONNECTOR + '[hardware.connectors.lock]\nbackend = "gpio"\nunlock_pin = false\n'
    assert error_of(tmp_path, toml({"hardware.backend": '"pi"'}, tail)).key == "hardware.connectors[1].lock.unlock_pin"


def test_lock_pins_are_claimed_like_every_pin(tmp_path):
    tail = PI_CONNECTOR + '[hardware.connectors.lock]\nbackend = "gpio"\nfeedback_pin = 17\n'
    err = error_of(tmp_path, toml({"hardware.backend": '"pi"'}, tail))
    assert err.key == "hardware.connectors[1].lock.feedback_pin"
    assert "GPIO17 is already used by hardware.connectors[1].relay.pin" in str(err)


def test_pp_and_pilot_adc_channels_may_not_collide(tmp_path):
    tail = (PI_CONNECTOR + '[hardware.connectors.pp]\nbackend = "adc"\nadc_channel = 0\n'
            '[hardware.connectors.pilot]\nbackend = "adc"\n')
    err = error_of(tmp_path, toml({"hardware.backend": '"pi"'}, tail))
    assert "ADC channel 0 on SPI0 CE0 is already used" in str(err)


def two_meters_on_one_bus(second: str = "", second_id: int = 2) -> str:
    """Two tethered mock connectors whose RS-485 meters share /dev/ttyUSB0 (ids 1 and ``second_id``)."""
    meter = '[hardware.connectors.meter]\nbackend = "modbus-rtu"\nserial_port = "/dev/ttyUSB0"\n'
    return toml({"charge_point.connectors": "2"}, f"[[hardware.connectors]]\n{meter}device_id = 1\n"
                                                  f"[[hardware.connectors]]\n{meter}device_id = {second_id}\n{second}")


def test_two_meters_on_one_rs485_bus_load(tmp_path):
    connectors = load_text(tmp_path, two_meters_on_one_bus()).hardware.connectors
    assert [(c.meter.serial_port, c.meter.device_id) for c in connectors] == [("/dev/ttyUSB0", 1), ("/dev/ttyUSB0", 2)]


@pytest.mark.parametrize("setting, value, shown", [("baudrate", "19200", "9600"), ("parity", '"E"', '"N"'),
                                                    ("stopbits", "2", "1"), ("timeout_s", "1.0", "0.5")])
def test_meters_on_one_rs485_bus_share_its_serial_settings(tmp_path, setting, value, shown):
    err = error_of(tmp_path, two_meters_on_one_bus(second=f"{setting} = {value}\n"))
    assert err.key == f"hardware.connectors[2].meter.{setting}"
    assert f'hardware.connectors[1].meter on the same serial_port "/dev/ttyUSB0" has {setting} = {shown}' in err.problem
    assert "share its settings" in err.problem and str(tmp_path / "evcp.toml") in str(err)


def test_meters_on_one_bus_need_a_device_id_each(tmp_path):
    err = error_of(tmp_path, two_meters_on_one_bus(second_id=1))
    assert err.key == "hardware.connectors[2].meter.device_id"
    assert "hardware.connectors[1].meter on the same serial_port" in err.problem and "(got 1)" in err.problem


def test_meters_behind_one_modbus_tcp_gateway_need_a_device_id_each(tmp_path):
    meter = '[hardware.connectors.meter]\nbackend = "modbus-tcp"\nhost = "10.0.0.9"\n'
    text = toml({"charge_point.connectors": "2"}, f"[[hardware.connectors]]\n{meter}[[hardware.connectors]]\n{meter}")
    assert error_of(tmp_path, text).key == "hardware.connectors[2].meter.device_id"
    loaded = load_text(tmp_path, toml({"charge_point.connectors": "2"},
                                      f"[[hardware.connectors]]\n{meter}[[hardware.connectors]]\n{meter}device_id = 2\n"))
    assert [c.meter.device_id for c in loaded.hardware.connectors] == [1, 2]




@pytest.mark.parametrize("security_profile", [0, 1])
@pytest.mark.parametrize("authorization_key", ["short", "0123456789abcdef0123456789", "0123456789abcdef01234567g9abcdef"])
def test_an_authorization_key_of_the_wrong_length_is_an_error_naming_it_and_not_showing_it(
        tmp_path, security_profile, authorization_key):
    """Security whitepaper: 16-20 characters, or 32-40 hex digits standing for 16-20 bytes."""
    path = tmp_path / "evcp.toml"
    path.write_text(f'[charge_point]\nid = "X"\n[ocpp]\ncsms_url = "ws://h/ocpp"\nsecurity_profile = {security_profile}\n'
                    f'authorization_key = "{authorization_key}"\n[hardware]\nbackend = "mock"\n')
    with pytest.raises(ConfigError) as error:
        load(path)
    assert error.value.key == "ocpp.authorization_key"
    assert "16 to 20 characters" in error.value.problem and authorization_key not in str(error.value)


@pytest.mark.parametrize("authorization_key", ["0123456789abcdef", "01234567890123456789", "0123456789abcdef" * 2,
                                               "0123456789abcdef0123456789abcdef01234567"])
def test_authorization_keys_of_the_right_length_load(tmp_path, authorization_key):
    path = tmp_path / "evcp.toml"
    path.write_text(f'[charge_point]\nid = "X"\n[ocpp]\ncsms_url = "ws://h/ocpp"\nsecurity_profile = 1\n'
                    f'authorization_key = "{authorization_key}"\n[hardware]\nbackend = "mock"\n')
    assert load(path).ocpp.authorization_key == authorization_key


def test_the_unedited_example_is_reported_and_its_central_system_refused():
    problems = {problem.key: problem for problem in cfg.setup_problems(load(EXAMPLE))}
    assert problems["ocpp.csms_url"].refuses_to_run and "csms.example.com" in problems["ocpp.csms_url"].problem
    assert not problems["charge_point.id"].refuses_to_run and "CP-0001" in problems["charge_point.id"].problem
    assert cfg.setup_problems(load(BENCH)) == []


def test_relay_heartbeat_pin_is_optional_range_checked_and_claimed(tmp_path):
    assert load_text(tmp_path, toml()).hardware.relay_heartbeat_pin is None
    pi = {"hardware.backend": '"pi"'}
    assert load_text(tmp_path, toml({**pi, "hardware.relay_heartbeat_pin": "26"}, PI_CONNECTOR)).hardware.relay_heartbeat_pin == 26
    err = error_of(tmp_path, toml({**pi, "hardware.relay_heartbeat_pin": "28"}, PI_CONNECTOR))
    assert err.key == "hardware.relay_heartbeat_pin" and "must be a BCM GPIO number 0..27 (got 28)" in str(err)
    err = error_of(tmp_path, toml({**pi, "hardware.relay_heartbeat_pin": "17"}, PI_CONNECTOR))
    assert err.key == "hardware.relay_heartbeat_pin"
    assert "GPIO17 is already used by hardware.connectors[1].relay.pin" in str(err)


def test_the_mirror_contact_pull_defaults_towards_closed_and_is_noted_until_set(tmp_path):
    pi = {"hardware.backend": '"pi"'}
    mirror = PI_CONNECTOR + "feedback_pin = 27\n"
    relay = load_text(tmp_path, toml(pi, mirror)).hardware.connectors[0].relay
    assert (relay.feedback_pull, relay.feedback_pull_resistor) == (None, "up")
    (problem,) = [p for p in cfg.setup_problems(load_text(tmp_path, toml(pi, mirror)))
                  if p.key.endswith("feedback_pull")]
    assert problem.key == "hardware.connectors[1].relay.feedback_pull" and not problem.refuses_to_run
    assert "GPIO27 is pulled up" in problem.problem and "broken wire" in problem.problem
    active_low = load_text(tmp_path, toml(pi, mirror + "feedback_active_high = false\n")).hardware.connectors[0]
    assert active_low.relay.feedback_pull_resistor == "down"
    explicit = load_text(tmp_path, toml(pi, mirror + 'feedback_pull = "down"\n'))
    assert explicit.hardware.connectors[0].relay.feedback_pull_resistor == "down"
    assert not [p for p in cfg.setup_problems(explicit) if p.key.endswith("feedback_pull")]


def test_a_mirror_contact_pull_must_be_up_down_or_none(tmp_path):
    err = error_of(tmp_path, toml({"hardware.backend": '"pi"'}, PI_CONNECTOR + 'feedback_pull = "pullup"\n'))
    assert err.key == "hardware.connectors[1].relay.feedback_pull"
    assert 'expected one of "up", "down", "none", got "pullup"' in err.problem


def test_an_active_low_relay_driver_is_warned_about(tmp_path):
    pi = {"hardware.backend": '"pi"'}
    active_low = PI_CONNECTOR + "active_high = false\n"
    problems = cfg.setup_problems(load_text(tmp_path, toml(pi, active_low)))
    (problem,) = [p for p in problems if p.key.endswith("relay.active_high")]
    assert problem.key == "hardware.connectors[1].relay.active_high"
    assert "ENERGISES an active-low relay driver" in problem.problem and not problem.refuses_to_run
    assert not [p for p in cfg.setup_problems(load_text(tmp_path, toml(pi, PI_CONNECTOR)))
                if p.key.endswith("relay.active_high")]


def _with_password(tmp_path, version: str, authorization_key: str, security_profile: int = 1) -> Path:
    return write(tmp_path, f'[charge_point]\nid = "X"\n[ocpp]\ncsms_url = "ws://h/ocpp"\nversion = "{version}"\n'
                           f'security_profile = {security_profile}\nauthorization_key = "{authorization_key}"\n'
                           '[hardware]\nbackend = "mock"\n')


@pytest.mark.parametrize("security_profile", [0, 1])
@pytest.mark.parametrize("authorization_key", ["a-2.0.1-basic-auth-password-30", "x" * 16, "x" * 40,
                                               "0123456789abcdef" * 2])
def test_a_2_0_1_basic_auth_password_of_16_to_40_characters_loads(tmp_path, security_profile, authorization_key):
    """Part 2 A00: SecurityCtrlr.BasicAuthPassword, 16 to 40 characters, sent as its text."""
    config = load(_with_password(tmp_path, "2.0.1", authorization_key, security_profile))
    assert config.ocpp.authorization_key == authorization_key


@pytest.mark.parametrize("version, authorization_key, words", [
    ("2.0.1", "x" * 15, ["16 to 40 printable characters", "got 15"]),
    ("2.0.1", "x" * 41, ["16 to 40 printable characters", "got 41"]),
    ("2.0.1", "tab\\tinside-the-password", ["16 to 40 printable characters"]),
    ("1.6", "a-2.0.1-basic-auth-password-30", ["16 to 20 characters"]),
    ("auto", "a-2.0.1-basic-auth-password-30", ['"auto"', "OCPP 1.6 and 2.0.1 alike", "16 to 20", "got 30"]),
    ("auto", "0123456789abcdef" * 2, ['"auto"', "hex"]),
])
def test_the_authorization_key_is_checked_for_the_protocol_it_is_sent_in_never_shown(
        tmp_path, version, authorization_key, words):
    with pytest.raises(ConfigError) as error:
        load(_with_password(tmp_path, version, authorization_key))
    assert error.value.key == "ocpp.authorization_key"
    assert all(word in error.value.problem for word in words), str(error.value)
    assert authorization_key.replace("\\t", "\t") not in str(error.value)


def test_with_auto_a_password_of_16_to_20_printable_characters_is_the_same_in_both_protocols(tmp_path):
    assert load(_with_password(tmp_path, "auto", "auto-password-18ch")).ocpp.authorization_key == "auto-password-18ch"
