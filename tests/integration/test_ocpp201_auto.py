"""``ocpp.version = "auto"`` over real processes: ``evcp run`` offers both protocols in the
websocket handshake and speaks the one the bench central system (``python -m evcp.bench.csms``)
picks; with a central system of 1.6 only it hands over to its OCPP 1.6 side, whose settings then
come from [ocpp.keys], never from [ocpp.variables]."""

from __future__ import annotations

import urllib.request

from .conftest import stop_csms, wait_until

AUTO = 'version = "auto"\n[ocpp.variables]\n"SampledDataCtrlr.TxUpdatedInterval" = 15'
"""Both sections: each protocol's own (a variable only 2.0.1 reads, a key only 1.6 reads)."""
KEYS_OF_1_6 = {"MeterValueSampleInterval": 5}


def only_charger(csms) -> dict:
    [charger] = csms.get("/chargers")["chargers"]
    return charger


def protocol_metric(charger) -> str:
    with urllib.request.urlopen(charger.base + "/metrics", timeout=10) as response:
        return next(line for line in response.read().decode().splitlines()
                    if line.startswith("evcp_ocpp_protocol_info{"))


def test_auto_offers_2_0_1_then_1_6_and_speaks_2_0_1_with_a_central_system_of_both(csms, start_charger):
    charger = start_charger(ocpp=AUTO, keys=KEYS_OF_1_6)
    listed = only_charger(csms)
    assert listed["subprotocols_offered"] == ["ocpp2.0.1, ocpp1.6"], "exactly these two, 2.0.1 first"
    assert listed["ocpp_version"] == "2.0.1" and listed["registration_status"] == "Accepted"
    ocpp = charger.status()["ocpp"]
    assert (ocpp["version"], ocpp["protocol"]) == ("auto", "2.0.1"), "the setting, and what the handshake agreed"
    assert protocol_metric(charger) == 'evcp_ocpp_protocol_info{version="auto",protocol="2.0.1"} 1'
    [boot] = csms.sent_by_charger("BootNotification")
    assert boot["chargingStation"]["vendorName"] and boot["reason"] == "PowerUp"  # the 2.0.1 shape
    read = csms.call("GetVariables", {"getVariableData": [
        {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}}]})
    assert read["payload"]["getVariableResult"][0]["attributeValue"] == "15"
    charger.start_charging("04A1B2C3")
    wait_until(lambda: [e for e in csms.sent_by_charger("TransactionEvent") if e["eventType"] == "Started"], 10,
               "TransactionEvent Started over 2.0.1")
    assert not csms.sent_by_charger("StartTransaction")


def test_auto_hands_over_to_1_6_with_a_central_system_of_1_6_only(csms, start_csms, start_charger):
    only_1_6 = start_csms("--ocpp-versions", "1.6")
    charger = start_charger(ocpp=AUTO, keys=KEYS_OF_1_6, csms_url=only_1_6.url + "/ocpp")
    listed = only_charger(only_1_6)
    assert listed["subprotocols_offered"][0] == "ocpp2.0.1, ocpp1.6"
    assert listed["subprotocols_offered"][-1] == "ocpp1.6", "after the hand-over the 1.6 side connects"
    assert listed["ocpp_version"] == "1.6" and listed["registration_status"] == "Accepted"
    ocpp = charger.status()["ocpp"]
    assert (ocpp["version"], ocpp["protocol"]) == ("1.6", "1.6")
    assert protocol_metric(charger) == 'evcp_ocpp_protocol_info{version="1.6",protocol="1.6"} 1'
    [boot] = only_1_6.sent_by_charger("BootNotification")
    assert boot["chargePointVendor"]  # the 1.6 shape
    read = only_1_6.call("GetConfiguration", {"key": ["MeterValueSampleInterval"]})
    assert read["payload"]["configurationKey"][0]["value"] == "5"
    charger.start_charging("04A1B2C3")
    wait_until(lambda: only_1_6.sent_by_charger("StartTransaction"), 10, "StartTransaction over 1.6")
    wait_until(lambda: [m for m in only_1_6.sent_by_charger("MeterValues") if m.get("transactionId")], 9,
               "MeterValues after 5 s (MeterValueSampleInterval), not 15 (TxUpdatedInterval)")
    assert csms.get("/chargers")["chargers"] == [], "the other central system never heard of it"
    stop_csms(only_1_6)
    ocpp = wait_until(lambda: (o := charger.status()["ocpp"]) and not o["connected"] and o, 10, "connection lost")
    assert (ocpp["version"], ocpp["protocol"]) == ("1.6", None), "nothing is spoken without a connection"
    assert protocol_metric(charger) == 'evcp_ocpp_protocol_info{version="1.6",protocol=""} 1'
