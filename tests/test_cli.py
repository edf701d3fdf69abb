"""`evcp` command line: every documented command; a bad config, a taken port or the unedited
example are one line and a distinct exit status, never a traceback."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import evcp
from evcp.cli import EX_CONFIG, EX_UNAVAILABLE, main
from tests.ports import free_port

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def test_run_with_a_bad_config_exits_78_with_file_and_key(tmp_path):
    bad = tmp_path / "evcp.toml"
    bad.write_text('[charge_point]\nid = "X"\nconnectors = "two"\n[ocpp]\ncsms_url = "ws://h/ocpp"\n'
                   '[hardware]\nbackend = "mock"\n')
    result = subprocess.run([sys.executable, "-m", "evcp", "run", "--config", str(bad)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == EX_CONFIG == 78
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert str(bad) in line and "charge_point.connectors" in line


def test_run_with_a_read_only_ocpp_key_exits_78_with_file_and_key_before_anything_starts(tmp_path):
    config, state = tmp_path / "evcp.toml", tmp_path / "state"
    config.write_text('[charge_point]\nid = "X"\n[ocpp]\ncsms_url = "ws://127.0.0.1:1/ocpp"\n'
                      '[ocpp.keys]\nLocalAuthListMaxLength = 5000\n[hardware]\nbackend = "mock"\n'
                      f'[storage]\nstate_dir = "{state}"\n')
    result = subprocess.run([sys.executable, "-m", "evcp", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == EX_CONFIG == 78
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"{config}: ocpp.keys.LocalAuthListMaxLength: read-only, a limit of this charge point (1000)" in line
    assert not state.exists(), "refused before the state database or any device"


def test_config_check_and_show(capsys):
    assert main(["config", "check", str(CONFIG_DIR / "bench.toml")]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["config", "show", str(CONFIG_DIR / "evcp.example.toml")]) == 0
    shown = capsys.readouterr().out
    assert "[charge_point]" in shown and "csms_url" in shown


def test_missing_config_file_is_a_config_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "evcp", "config", "check", str(tmp_path / "nope.toml")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 78 and "nope.toml" in result.stderr


def test_a_corrupt_state_database_is_reported_and_nothing_is_switched(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "evcp.sqlite3").write_bytes(b"this is not a database" * 100)
    config = tmp_path / "evcp.toml"
    config.write_text(f'[charge_point]\nid = "X"\n[ocpp]\ncsms_url = "ws://127.0.0.1:1/ocpp"\n'
                      f'[hardware]\nbackend = "mock"\n[api]\nlisten = "127.0.0.1:18999"\n'
                      f'[storage]\nstate_dir = "{state}"\n')
    result = subprocess.run([sys.executable, "-m", "evcp", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 74
    assert "evcp.sqlite3" in result.stderr and "corrupt" in result.stderr
    assert "Traceback" not in result.stderr
    assert "contactor CLOSED" not in result.stderr


def test_check_hardware_against_the_simulated_hardware(tmp_path):
    config = tmp_path / "evcp.toml"
    config.write_text((CONFIG_DIR / "bench.toml").read_text().replace('state_dir = "../.bench-state"',
                                                                      f'state_dir = "{tmp_path}"'))
    result = subprocess.run([sys.executable, "-m", "evcp", "check-hardware", "--config", str(config), "--yes"],
                            capture_output=True, text=True, timeout=60)
    # The simulated socket has no cable in it until an EV is plugged in: its PP is not verified.
    assert result.returncode == 2, result.stdout + result.stderr
    assert "connector 1 relay: ok" in result.stdout and "connector 1 lock: ok" in result.stdout
    assert "connector 1 PP: skipped (not verified: no cable in the socket" in result.stdout
    assert "Result: no failure, but 1 not verified (5 ok, 1 skipped, 0 failed" in result.stdout
    wired = subprocess.run([sys.executable, "-m", "evcp", "check-hardware", "--config", str(config), "--yes",
                            "--only", "relay,pilot,lock,meter,power"], capture_output=True, text=True, timeout=60)
    assert wired.returncode == 0 and "Result: all checks passed" in wired.stdout, wired.stdout + wired.stderr
    bad = subprocess.run([sys.executable, "-m", "evcp", "check-hardware", "--config", str(config), "--only", "toaster"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "known checks" in bad.stderr


# ---------------------------------------------------------------------------------------------
# Every command line the README documents, and what a user sees when a port is taken.

def evcp_command(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evcp", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_version():
    result = evcp_command("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"evcp {evcp.__version__}"


@pytest.mark.parametrize("command", [[], ["run"], ["bench"], ["config", "check"], ["config", "show"],
                                     ["check-hardware"], ["relays-off"], ["csms"]])
def test_help_of_every_command(command):
    result = evcp_command(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: evcp {' '.join(command)}".rstrip())
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["run"], ["bench"], ["config", "check", "x.toml"], ["config", "show", "x.toml"],
                                     ["check-hardware"], ["relays-off"], ["csms"]])
def test_an_unknown_option_gets_the_usage_of_the_command_given(command):
    name = " ".join(word for word in command if not word.endswith(".toml"))
    result = evcp_command(*command, "--bogus")
    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: evcp {name} "), result.stderr
    assert result.stderr.rstrip().endswith(f"evcp {name}: error: unrecognized arguments: --bogus"), result.stderr


def test_help_and_package_name_both_protocols():
    import tomllib

    assert "OCPP 1.6J and 2.0.1" in evcp_command("--help").stdout
    assert "OCPP 1.6J and 2.0.1" in evcp_command("csms", "--help").stdout
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["description"].endswith("OCPP 1.6J and 2.0.1")


def test_help_names_the_options_the_readme_documents():
    assert all(option in evcp_command("bench", "--help").stdout
               for option in ("--csms", "--config", "--state-dir", "--listen", "--csms-listen", "--control"))
    assert all(option in evcp_command("csms", "--help").stdout
               for option in ("--listen", "--control", "--tags", "--tls-cert", "--basic-auth"))
    assert all(option in evcp_command("check-hardware", "--help").stdout for option in ("--config", "--yes", "--only"))
    assert f"{EX_UNAVAILABLE} an address to listen on is in use" in evcp_command("--help").stdout.replace("\n", " ")



@pytest.fixture
def busy_port():
    """A port something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def wait_for_line(process: subprocess.Popen, pattern: str, timeout: float = 20) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if match := re.search(pattern, line):
            return match
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"no line matching {pattern!r}")


@pytest.mark.parametrize("command", [["csms"], ["-m", "evcp.bench.csms"]])
def test_the_central_system_command_line_with_every_documented_option(command):
    listen, control = free_port(), free_port()
    argv = ([sys.executable, "-m", "evcp", *command] if command == ["csms"] else [sys.executable, *command])
    process = subprocess.Popen([*argv, "--listen", f"127.0.0.1:{listen}", "--control", f"127.0.0.1:{control}",
                                "--tags", "04A1B2C3,DEADBEEF"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        match = wait_for_line(process, r"csms listening on (\S+) control (\S+)")
        assert match.groups() == (f"ws://127.0.0.1:{listen}", f"http://127.0.0.1:{control}")
        policy = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{control}/policy", timeout=5).read())
        assert policy["accept_all"] is False and policy["tags"] == ["04A1B2C3", "DEADBEEF"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0 and "Traceback" not in stderr


def test_central_system_bad_options_are_usage_errors():
    result = evcp_command("csms", "--listen", "nowhere")
    assert result.returncode == 2 and "expected HOST:PORT" in result.stderr
    result = evcp_command("csms", "--tls-cert", "x.pem")
    assert result.returncode == 2 and "--tls-cert and --tls-key go together" in result.stderr


def bench_config_file(tmp_path, api_port: int) -> Path:
    config = tmp_path / "bench.toml"
    config.write_text((CONFIG_DIR / "bench.toml").read_text()
                      .replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{api_port}"'))
    return config


def one_error_line(result: subprocess.CompletedProcess, address: str) -> str:
    assert result.returncode == EX_UNAVAILABLE == 69, result.stderr
    assert "Traceback" not in result.stderr and "is not started" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "cannot listen" in line]
    assert f"cannot listen on {address}: address already in use" in line
    return line


def test_run_with_the_api_port_taken(tmp_path, busy_port):
    config = tmp_path / "evcp.toml"
    config.write_text(f'[charge_point]\nid = "X"\n[ocpp]\ncsms_url = "ws://127.0.0.1:1/ocpp"\n'
                      f'[hardware]\nbackend = "mock"\n[api]\nlisten = "127.0.0.1:{busy_port}"\n'
                      f'[storage]\nstate_dir = "{tmp_path / "state"}"\n')
    line = one_error_line(evcp_command("run", "--config", str(config)), f"127.0.0.1:{busy_port}")
    assert "api.listen" in line
    assert "contactor CLOSED" not in line


@pytest.mark.parametrize("taken", ["csms", "control", "api"])
def test_bench_with_a_port_taken(tmp_path, busy_port, taken):
    api, csms = free_port(), free_port()
    ports = {"api": api, "csms": csms, "control": free_port()}
    ports[taken] = busy_port
    result = evcp_command("bench", "--config", str(bench_config_file(tmp_path, 8080)), "--state-dir",
                          str(tmp_path / "state"), "--listen", f"127.0.0.1:{ports['api']}",
                          "--csms-listen", f"127.0.0.1:{ports['csms']}", "--control", f"127.0.0.1:{ports['control']}")
    line = one_error_line(result, f"127.0.0.1:{busy_port}")
    assert {"csms": "central system:", "control": "control API", "api": "API (api.listen)"}[taken] in line


def test_csms_with_its_port_taken(busy_port):
    result = evcp_command("csms", "--listen", f"127.0.0.1:{busy_port}", "--control", "127.0.0.1:0")
    assert result.returncode == EX_UNAVAILABLE and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"csms: central system: cannot listen on 127.0.0.1:{busy_port}: address already in use"


def test_an_address_not_on_this_machine_is_one_short_line(tmp_path):
    """192.0.2.1 (TEST-NET-1) is never assigned here: the system's reason, not asyncio's long text."""
    config = tmp_path / "evcp.toml"
    config.write_text(f'[charge_point]\nid = "X"\n[ocpp]\ncsms_url = "ws://127.0.0.1:1/ocpp"\n'
                      f'[hardware]\nbackend = "mock"\n[api]\nlisten = "192.0.2.1:8080"\npassword = "a-long-api-password"\n'
                      f'[storage]\nstate_dir = "{tmp_path / "state"}"\n')
    result = evcp_command("run", "--config", str(config))
    assert result.returncode == EX_UNAVAILABLE and "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "cannot listen" in line]
    assert line.endswith("API (api.listen): cannot listen on 192.0.2.1:8080: cannot assign requested address"), line
    result = evcp_command("csms", "--listen", "192.0.2.1:9000", "--control", "127.0.0.1:0")
    assert result.returncode == EX_UNAVAILABLE
    assert result.stderr.strip() == "csms: central system: cannot listen on 192.0.2.1:9000: cannot assign requested address"


def test_config_check_of_the_unedited_example_says_what_to_change():
    result = evcp_command("config", "check", str(CONFIG_DIR / "evcp.example.toml"))
    assert result.returncode == EX_CONFIG
    lines = result.stderr.strip().splitlines()
    assert any("ocpp.csms_url" in line and "reserved example domain" in line for line in lines)
    assert any(line.startswith("evcp: warning: ") and "charge_point.id" in line and "CP-0001" in line for line in lines)


def test_run_refuses_the_unedited_example_before_touching_any_device(tmp_path):
    config = tmp_path / "evcp.toml"
    config.write_text((CONFIG_DIR / "evcp.example.toml").read_text().replace(
        'state_dir = "/var/lib/evcp"', f'state_dir = "{tmp_path}"'))
    result = evcp_command("run", "--config", str(config))
    assert result.returncode == EX_CONFIG and "Traceback" not in result.stderr
    assert "reserved example domain" in result.stderr and "WARNING evcp: " in result.stderr
    assert "contactor" not in result.stderr and not (tmp_path / "evcp.sqlite3").exists()


def test_config_check_warns_about_the_example_id_but_passes(tmp_path):
    config = tmp_path / "evcp.toml"
    config.write_text((CONFIG_DIR / "evcp.example.toml").read_text().replace("csms.example.com", "csms.example.net.cpo.eu"))
    result = evcp_command("config", "check", str(config))
    assert result.returncode == 0 and "1 warning(s)" in result.stdout
    assert result.stderr.startswith("evcp: warning: ") and "CP-0001" in result.stderr


TIMESTAMP = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR|CRITICAL) "


def journal_stream_env(journal_stream: str, stderr, elsewhere) -> dict:
    """JOURNAL_STREAM naming the process's ``stderr`` file ("stderr"), another stream as a terminal
    of a systemd user session inherits it ("inherited"), or unset."""
    if journal_stream == "unset":
        return {**os.environ, "JOURNAL_STREAM": ""}
    named = os.fstat((stderr if journal_stream == "stderr" else elsewhere).fileno())
    return {**os.environ, "JOURNAL_STREAM": f"{named.st_dev}:{named.st_ino}"}


@pytest.mark.parametrize("journal_stream", ["stderr", "inherited", "unset"])
def test_log_lines_have_timestamps_unless_journald_adds_them(tmp_path, journal_stream):
    """Journal lines only when stderr is the stream JOURNAL_STREAM names (systemd.exec(5)); a
    terminal that inherited the variable (systemd user session) keeps its timestamps."""
    config = tmp_path / "evcp.toml"
    config.write_text((CONFIG_DIR / "evcp.example.toml").read_text())
    with open(tmp_path / "stderr", "w+") as stderr, open(tmp_path / "elsewhere", "w") as elsewhere:
        subprocess.run([sys.executable, "-m", "evcp", "run", "--config", str(config)], stdout=subprocess.DEVNULL,
                       stderr=stderr, env=journal_stream_env(journal_stream, stderr, elsewhere), timeout=60)
        stderr.seek(0)
        lines = stderr.read().strip().splitlines()
    assert lines
    for line in lines:
        if journal_stream == "stderr":
            assert re.match(r"^<[2-7]>evcp: ", line), line
        else:
            assert re.match(TIMESTAMP, line), line


@pytest.mark.parametrize("journal_stream", ["stderr", "unset"])
def test_the_central_system_logs_as_the_charger_does(tmp_path, journal_stream):
    with open(tmp_path / "stderr", "w+") as stderr, open(tmp_path / "elsewhere", "w") as elsewhere:
        process = subprocess.Popen([sys.executable, "-m", "evcp", "csms", "--verbose", "--listen", "127.0.0.1:0",
                                    "--control", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=stderr, text=True,
                                   env={**journal_stream_env(journal_stream, stderr, elsewhere), "PYTHONUNBUFFERED": "1"})
        try:
            wait_for_line(process, r"csms listening on ")
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=15)
        stderr.seek(0)
        lines = stderr.read().strip().splitlines()
    assert process.returncode == 0
    assert any("evcp.bench.csms: shutting down" in line for line in lines), lines
    for line in lines:
        if journal_stream == "stderr":
            assert re.match(r"^<[2-7]>evcp\.bench\.csms[.\w]*: ", line), line
        else:
            assert re.match(TIMESTAMP + r"evcp\.bench\.csms[.\w]*: ", line), line


def test_bench_ocpp_2_0_1_with_a_1_6_key_without_an_equivalent_is_exit_78_naming_it(tmp_path):
    config = bench_config_file(tmp_path, 8080)
    config.write_text(config.read_text().replace("MeterValueSampleInterval = 10", "ResetRetries = 2"))
    result = evcp_command("bench", "--config", str(config), "--state-dir", str(tmp_path / "state"),
                          "--ocpp", "2.0.1")
    assert result.returncode == 78 and "Traceback" not in result.stderr
    assert f"{config}: ocpp.keys.ResetRetries: an OCPP 1.6 key without an OCPP 2.0.1 equivalent" in result.stderr
    assert "--ocpp 2.0.1" in result.stderr


def test_config_check_names_a_1_6_key_under_2_0_1_and_its_equivalent(tmp_path):
    config = tmp_path / "evcp.toml"
    config.write_text('[charge_point]\nid = "X"\n[ocpp]\ncsms_url = "ws://127.0.0.1:1/ocpp"\nversion = "2.0.1"\n'
                      '[ocpp.keys]\nMeterValueSampleInterval = 10\n[hardware]\nbackend = "mock"\n')
    result = evcp_command("config", "check", str(config))
    assert result.returncode == 78
    assert result.stderr.strip() == (
        f'evcp: {config}: ocpp.keys.MeterValueSampleInterval: an OCPP 1.6 configuration key, but ocpp.version is '
        '"2.0.1": write its OCPP 2.0.1 equivalent in [ocpp.variables]: "SampledDataCtrlr.TxUpdatedInterval" = 10')
