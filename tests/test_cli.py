"""`evcp` command line: a bad config is one line and exit status 78, never a traceback."""

import subprocess
import sys
from pathlib import Path

from evcp.cli import EX_CONFIG, main

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
    assert result.returncode == 0, result.stdout + result.stderr
    assert "connector 1 relay: ok" in result.stdout and "Result: all checks passed" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "evcp", "check-hardware", "--config", str(config), "--only", "toaster"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "known checks" in bad.stderr
