"""Nothing lost: power cuts (SIGKILL), central-system outages, restarts. Real processes only.

After each: every transaction closed exactly once at the central system, meterStop >=
meterStart, meterStop equal to the simulated meter's count, the contactor open.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from evcp.storage import LOST_WITH_THE_LOG

from .test_ocpp201 import ended, events, seq_anomalies, start_201, started_transaction

pytestmark = pytest.mark.integration


def closed(csms):
    return [t for t in csms.transactions() if not t["open"]]


def kill(charger) -> None:
    charger.process.send_signal(signal.SIGKILL)
    charger.process.wait(5)


def assert_billed_once(csms, tx):
    assert tx["duplicate_stops"] == [], "a transaction is closed exactly once"
    assert tx["stop"]["meter_stop"] >= tx["meter_start"]
    assert csms.get("/anomalies")["anomalies"] == []


def test_tc_032_2_power_cut_while_charging_is_stopped_with_power_loss_after_boot(csms, start_charger, wait_until):
    charger = start_charger(keys={"MeterValueSampleInterval": 1})
    charger.start_charging("POWERCUT")
    wait_until(lambda: charger.connector()["session_energy_wh"] >= 3, 10, "energy flowing")
    charger.process.send_signal(signal.SIGKILL)
    charger.process.wait(5)

    charger = start_charger(keys={"MeterValueSampleInterval": 1})
    [tx] = wait_until(lambda: closed(csms), 15, "the PowerLoss stop")
    assert tx["stop"]["reason"] == "PowerLoss"
    assert_billed_once(csms, tx)
    meter_now = charger.connector()["energy_wh"]
    assert abs(tx["stop"]["meter_stop"] - meter_now) <= 1, "meterStop is the meter's count at the cut"
    assert tx["stop"]["meter_stop"] - tx["meter_start"] >= 3
    assert charger.connector()["relay_closed"] is False
    assert "PowerLoss" in charger.log_path.read_text()


def test_power_cut_before_the_start_was_confirmed_still_bills_one_transaction(csms, start_charger, wait_until):
    csms.post("/policy", {"accept_connections": False})
    charger = start_charger(wait_online=False)
    wait_until(lambda: "refused the connection" in charger.log_path.read_text(), 10, "outage seen")
    charger.pilot("C")
    charger.tap("NOSTART1")  # offline: no authorization, so no transaction may start
    charger.process.send_signal(signal.SIGKILL)
    charger.process.wait(5)
    csms.post("/policy", {"accept_connections": True})
    start_charger()
    assert csms.transactions() == [], "nothing started without an Accepted authorization"


def test_tc_036_connection_loss_during_transaction_delivers_queued_values_in_order(csms, start_charger, wait_until):
    charger = start_charger(keys={"MeterValueSampleInterval": 1})
    charger.start_charging("OUTAGE01")
    csms.post("/policy", {"accept_connections": False})
    csms.post("/disconnect", {"cp": "CP-IT-01"})
    wait_until(lambda: not charger.status()["ocpp"]["connected"], 5, "disconnect seen")
    wait_until(lambda: charger.status()["ocpp"]["queued_messages"] >= 3, 10, "3 samples queued")
    assert charger.connector()["status"] == "Charging", "the session goes on offline"
    charger.tap("OUTAGE01")  # TC_038: stopped locally while offline
    charger.wait_status("Finishing")
    csms.post("/policy", {"accept_connections": True})
    [tx] = wait_until(lambda: closed(csms), 15, "queued StopTransaction")
    assert tx["stop"]["reason"] == "Local"
    assert_billed_once(csms, tx)
    stamps = [mv["meter_value"][0]["timestamp"] if "meter_value" in mv else mv["meterValue"][0]["timestamp"]
              for mv in tx["meter_values"]]
    assert len(stamps) >= 3 and stamps == sorted(stamps), "queued values arrive in chronological order"
    assert charger.status()["ocpp"]["queued_messages"] == 0


def test_availability_survives_a_restart_tc_034(csms, start_charger, wait_until):
    charger = start_charger()
    assert csms.call("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})["payload"] == {"status": "Accepted"}
    charger.wait_status("Unavailable")
    charger.process.send_signal(signal.SIGTERM)
    charger.process.wait(10)
    charger = start_charger()
    assert charger.connector()["status"] == "Unavailable"
    assert charger.status()["charge_point"]["status"] == "Unavailable"


def test_configuration_changed_by_the_central_system_survives_a_restart(csms, start_charger):
    charger = start_charger()
    assert csms.call("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "17"})["payload"] == \
        {"status": "Accepted"}
    charger.process.send_signal(signal.SIGKILL)
    charger.process.wait(5)
    start_charger()
    conf = csms.call("GetConfiguration", {"key": ["MeterValueSampleInterval"]})["payload"]
    assert conf["configurationKey"][0]["value"] == "17"


def test_tc_032_1_sigterm_stops_the_transaction_before_exiting(csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("SIGTERM1")
    charger.process.send_signal(signal.SIGTERM)
    assert charger.process.wait(15) == 0
    [tx] = closed(csms)
    assert tx["stop"]["reason"] == "Reboot"
    assert_billed_once(csms, tx)
    assert "every contactor open" in charger.log_path.read_text()
    start_charger()
    assert len(csms.transactions()) == 1 and closed(csms)[0]["duplicate_stops"] == []


def test_sigterm_with_leave_open_policy_is_closed_with_power_loss_at_the_next_start(csms, start_charger, wait_until):
    charger = start_charger(charge_point='on_shutdown = "leave-open"')
    charger.start_charging("LEAVEOPN")
    charger.process.send_signal(signal.SIGTERM)
    charger.process.wait(15)
    assert csms.transactions()[0]["open"]
    start_charger()
    [tx] = wait_until(lambda: closed(csms), 10, "PowerLoss stop at the next start")
    assert tx["stop"]["reason"] == "PowerLoss"


def test_tc_039_offline_transaction_with_the_installer_opt_in(csms, start_charger, wait_until):
    csms.post("/policy", {"accept_connections": False})
    charger = start_charger(keys={"AllowOfflineTxForUnknownId": True}, ocpp="allow_offline_start = true",
                            wait_online=False)
    charger.start_charging("OFFLINE9")
    wait_until(lambda: charger.connector()["session_energy_wh"] >= 2, 10, "energy while offline")
    charger.tap("OFFLINE9")
    charger.wait_status("Finishing")
    assert csms.transactions() == []
    csms.post("/policy", {"accept_connections": True})
    [tx] = wait_until(lambda: closed(csms), 15, "Start then Stop after the outage")
    assert tx["id_tag"] == "OFFLINE9" and tx["stop"]["reason"] == "Local"
    assert_billed_once(csms, tx)
    assert tx["stop"]["meter_stop"] >= tx["meter_start"] + 2


def test_without_the_opt_in_no_session_starts_offline(csms, start_charger, wait_until):
    csms.post("/policy", {"accept_connections": False})
    charger = start_charger(keys={"AllowOfflineTxForUnknownId": True}, wait_online=False)
    charger.pilot("C")
    charger.tap("OFFLINE8")
    wait_until(lambda: "not authorized" in charger.log_path.read_text(), 10, "offline refusal")
    assert charger.connector()["relay_closed"] is False and charger.connector()["transaction_id"] is None


def test_tc_032_1_power_fail_input_stops_transactions_before_the_power_goes(csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("UPS00001")
    assert charger.fault("power", True) == {"device": "power", "active": True}
    [tx] = wait_until(lambda: closed(csms), 10, "PowerLoss stop while on backup power")
    assert tx["stop"]["reason"] == "PowerLoss"
    assert_billed_once(csms, tx)
    assert charger.connector()["relay_closed"] is False
    charger.tap("UPS00002")
    assert len(csms.transactions()) == 1, "no new session while the mains is failing"
    charger.fault("power", False)
    wait_until(lambda: len(csms.sent_by_charger("BootNotification")) == 2, 15, "restart after the mains came back")


def test_transaction_message_attempts_retry_a_callerror_then_deliver(csms, start_charger, wait_until):
    csms.post("/policy", {"call_errors": {"StopTransaction": 2}})
    charger = start_charger(keys={"TransactionMessageAttempts": 3, "TransactionMessageRetryInterval": 1})
    charger.start_charging("RETRY001")
    charger.tap("RETRY001")
    [tx] = wait_until(lambda: closed(csms), 15, "the third attempt")
    assert_billed_once(csms, tx)
    assert len(csms.sent_by_charger("StopTransaction")) == 3
    assert "attempt 2 of 3" in charger.log_path.read_text()


# Lost or damaged state: said, never a silent new charger.

def run_to_exit(charger) -> subprocess.CompletedProcess:
    """`evcp run` once more on the charger's config, until it exits by itself."""
    return subprocess.run([sys.executable, "-m", "evcp", "run", "--config", str(charger.config_path)],
                          capture_output=True, text=True, timeout=60)


def state_file(charger) -> Path:
    return charger.config_path.parent / "state" / "evcp.sqlite3"


def test_a_database_truncated_to_zero_is_refused_with_exit_74_and_the_pending_transaction_kept(
        csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("ZEROED01")
    kill(charger)
    state_file(charger).write_bytes(b"")
    result = run_to_exit(charger)
    assert result.returncode == 74
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert f"{state_file(charger)} is empty (0 bytes)" in line and "move it aside" in line
    assert "Traceback" not in result.stderr
    assert csms.transactions()[0]["open"], "nothing was started as a new charger over the lost state"
    assert len(csms.sent_by_charger("BootNotification")) == 1


def test_a_state_dir_that_is_a_file_exits_74_naming_it(csms, start_charger, tmp_path):
    charger = start_charger()
    charger.process.send_signal(signal.SIGTERM)
    charger.process.wait(15)
    state = charger.config_path.parent / "state"
    shutil.rmtree(state)
    state.write_text("not a directory")
    result = run_to_exit(charger)
    assert result.returncode == 74
    assert f"{state} is a file, not a directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_garbage_write_ahead_log_is_reported_and_its_copy_kept(csms, start_charger, wait_until):
    charger = start_charger()
    kill(charger)
    wal = state_file(charger).with_name("evcp.sqlite3-wal")
    wal.write_bytes(b"garbage" * 1000)
    charger = start_charger()
    log = charger.log_path.read_text()
    assert "state database damaged" in log and "is not a write-ahead log" in log
    assert list(wal.parent.glob("evcp.sqlite3-wal.damaged-*")), "the evidence is kept"
    events = wait_until(lambda: [e for e in csms.get("/chargers")["chargers"][0]["security_events"]
                                 if e["type"] == "StateDatabaseDamaged"], 10, "the security event")
    assert "is not a write-ahead log" in events[0]["tech_info"]


def write_ahead_log(charger) -> Path:
    return state_file(charger).with_name("evcp.sqlite3-wal")


def damage_write_ahead_log(charger, how: str) -> None:
    """What a failing SD card does to the write-ahead log of a killed charger."""
    held = write_ahead_log(charger).read_bytes()
    write_ahead_log(charger).write_bytes(held[:len(held) // 2] if how == "cut in half" else os.urandom(len(held)))


def damage_events(csms) -> list[dict]:
    return [e for e in csms.get("/chargers")["chargers"][0]["security_events"] if e["type"] == "StateDatabaseDamaged"]


@pytest.mark.parametrize("how", ["cut in half", "garbage"])
def test_tc_032_2_power_cut_while_charging_then_a_damaged_write_ahead_log_still_stops_with_power_loss(
        csms, start_charger, wait_until, how):
    charger = start_charger(keys={"MeterValueSampleInterval": 1})
    charger.start_charging("WALDAMAG")
    wait_until(lambda: charger.connector()["session_energy_wh"] >= 1, 10, "energy flowing")
    wait_until(lambda: write_ahead_log(charger).stat().st_size, 10, "a sample written since the last checkpoint")
    kill(charger)
    damage_write_ahead_log(charger, how)

    charger = start_charger(keys={"MeterValueSampleInterval": 1})
    [tx] = wait_until(lambda: closed(csms), 15, "the PowerLoss stop")
    assert tx["stop"]["reason"] == "PowerLoss"
    assert_billed_once(csms, tx)
    assert abs(tx["stop"]["meter_stop"] - charger.connector()["energy_wh"]) <= 1, "the meter's count at the cut"
    assert charger.connector()["relay_closed"] is False
    assert charger.connector()["status"] == "Available"
    log = charger.log_path.read_text()
    assert "state database damaged" in log and LOST_WITH_THE_LOG in log
    [event] = wait_until(lambda: damage_events(csms), 10, "the StateDatabaseDamaged security event")
    assert LOST_WITH_THE_LOG in event["tech_info"] and "copy kept as evcp.sqlite3-wal.damaged-" in event["tech_info"]
    assert len(csms.sent_by_charger("StartTransaction")) == 1


@pytest.mark.parametrize("how", ["cut in half", "garbage"])
def test_e_power_loss_then_a_damaged_write_ahead_log_still_ends_the_transaction_once_ocpp201(
        csms, start_charger, wait_until, how):
    charger = start_201(start_charger)
    charger.start_charging("04A1B2C3")
    tx_id = started_transaction(csms)
    wait_until(lambda: charger.connector()["session_energy_wh"] >= 1, 10, "energy flowing")
    wait_until(lambda: write_ahead_log(charger).stat().st_size, 10, "a sample written since the last checkpoint")
    kill(charger)
    damage_write_ahead_log(charger, how)

    charger = start_201(start_charger)
    end = ended(csms, tx_id)
    assert end["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert [e["eventType"] for e in events(csms)] == ["Started", "Ended"], "one transaction, ended once"
    assert end["seqNo"] == 1 and seq_anomalies(csms) == [] and csms.get("/anomalies")["anomalies"] == []
    assert charger.connector()["relay_closed"] is False
    [event] = wait_until(lambda: damage_events(csms), 10, "the StateDatabaseDamaged security event")
    assert LOST_WITH_THE_LOG in event["tech_info"]


@pytest.mark.parametrize("how", ["cut in half", "garbage"])
def test_e_a_damaged_write_ahead_log_never_makes_the_power_loss_end_repeat_a_seq_no_ocpp201(
        csms, start_charger, wait_until, how):
    """Updated events every second, delivered; the log that held them is damaged: the Ended that
    closes the transaction still takes the seqNo after the last one the CSMS has."""
    sampled = '[ocpp.variables]\n"SampledDataCtrlr.TxUpdatedInterval" = 1'
    charger = start_201(start_charger, ocpp=sampled)
    charger.start_charging("04A1B2C3")
    tx_id = started_transaction(csms)
    wait_until(lambda: [e for e in events(csms, tx_id) if e["eventType"] == "Updated"
                        and e["triggerReason"] == "MeterValuePeriodic"][2:], 15, "three periodic Updated events")
    wait_until(lambda: write_ahead_log(charger).stat().st_size, 10, "something written since the last checkpoint")
    kill(charger)
    delivered = [e["seqNo"] for e in events(csms, tx_id)]
    damage_write_ahead_log(charger, how)

    start_201(start_charger, ocpp=sampled)
    end = ended(csms, tx_id)
    assert end["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert end["seqNo"] == max(delivered) + 1, (delivered, end["seqNo"])
    assert seq_anomalies(csms) == []


def test_security_events_raised_offline_survive_a_power_cut_and_arrive_in_order(csms, start_charger, wait_until):
    csms.post("/policy", {"accept_connections": False})
    charger = start_charger(wait_online=False)
    wait_until(lambda: "refused the connection" in charger.log_path.read_text(), 10, "outage seen")
    kill(charger)
    charger = start_charger(wait_online=False)
    kill(charger)
    csms.post("/policy", {"accept_connections": True})
    start_charger()

    def startup_events():
        return [e for e in csms.get("/chargers")["chargers"][0]["security_events"] if e["type"] == "StartupOfTheDevice"]

    startups = wait_until(lambda: len(found := startup_events()) == 3 and found, 15, "the three startups")
    stamps = [e["timestamp"] for e in startups]
    assert stamps == sorted(stamps), "in the order they happened"
