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
