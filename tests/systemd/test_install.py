"""systemd/install.sh and uninstall.sh into a scratch root, and the directives of evcp.service.

The scripts run with ``--root DIR``: nothing outside DIR is touched, and the commands that would
change the machine (useradd, chown, systemctl, apt-get) are printed as ``would: ...`` lines.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "systemd" / "install.sh"
UNINSTALL = REPO / "systemd" / "uninstall.sh"
UNIT = REPO / "systemd" / "evcp.service"
EXAMPLE = REPO / "config" / "evcp.example.toml"


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(script), *args], capture_output=True, text=True, timeout=120)


def install(root: Path, *extra: str) -> subprocess.CompletedProcess:
    result = run(INSTALL, "--root", str(root), "--no-venv", "--source", str(REPO), *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def uninstall(root: Path, *extra: str) -> subprocess.CompletedProcess:
    result = run(UNINSTALL, "--root", str(root), *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def would(result: subprocess.CompletedProcess) -> list[list[str]]:
    """The commands a dry run printed instead of running, split like a shell would."""
    return [shlex.split(line[len("would:"):]) for line in result.stdout.splitlines()
            if line.startswith("would:")]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tree(root: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every path below root with its mode and, for files, its content (for links, the target:
    the unit's WantedBy= link names the deployed path, which does not exist here)."""
    return {str(p.relative_to(root)): (p.lstat().st_mode, os.readlink(p) if p.is_symlink() else
                                       p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


# --- install.sh ---

def test_install_lays_out_unit_config_and_state(tmp_path):
    result = install(tmp_path)

    unit = tmp_path / "etc/systemd/system/evcp.service"
    assert unit.read_bytes() == UNIT.read_bytes()
    assert mode(unit) == 0o644

    config = tmp_path / "etc/evcp/evcp.toml"
    assert config.read_bytes() == EXAMPLE.read_bytes()
    assert mode(config) == 0o640
    assert mode(tmp_path / "etc/evcp") == 0o750
    assert mode(tmp_path / "var/lib/evcp") == 0o750
    assert not (tmp_path / "opt/evcp").exists()  # --no-venv
    # One line per step, and the next steps.
    assert "config /etc/evcp/evcp.toml: created" in result.stdout
    assert "systemctl start evcp" in result.stdout
    assert "journalctl -u evcp -f" in result.stdout
    assert "evcp config check /etc/evcp/evcp.toml" in result.stdout


def test_install_says_which_system_commands_it_would_run(tmp_path):
    commands = would(install(tmp_path))

    useradd = [c for c in commands if c[0] == "useradd"]
    assert len(useradd) == 1, commands
    args = useradd[0]
    assert args[-1] == "evcp" and "--system" in args
    assert set(args[args.index("--groups") + 1].split(",")) == {"gpio", "spi", "dialout"}
    assert args[args.index("--home-dir") + 1] == "/var/lib/evcp"
    assert args[args.index("--shell") + 1] in ("/usr/sbin/nologin", "/bin/false")
    # The groups are created when missing (a plain Debian has no gpio or spi group).
    assert {tuple(c) for c in commands if c[0] == "groupadd"} == {
        ("groupadd", "--system", g) for g in ("gpio", "spi", "dialout")}
    assert ["chown", "root:evcp", "/etc/evcp/evcp.toml"] in commands
    assert ["chown", "root:evcp", "/etc/evcp"] in commands
    assert ["chown", "evcp:evcp", "/var/lib/evcp"] in commands
    assert ["systemctl", "daemon-reload"] in commands
    # enable is done for real on the tree (systemctl --root), or said to be left to the target.
    assert ["systemctl", "enable", "evcp"] not in commands
    # Enabled, not started: the installer edits the config first.
    assert not [c for c in commands if c[:2] in (["systemctl", "start"], ["systemctl", "restart"])]
    assert not [c for c in commands if "--now" in c]


def test_second_run_is_idempotent_and_keeps_an_edited_config(tmp_path):
    install(tmp_path)
    config = tmp_path / "etc/evcp/evcp.toml"
    edited = config.read_text().replace('id = "CP-0001"', 'id = "GARAGE-7"') + '\n# installer note\n'
    config.write_text(edited)
    before = tree(tmp_path)

    result = install(tmp_path)

    assert config.read_text() == edited
    assert tree(tmp_path) == before
    assert "config /etc/evcp/evcp.toml: exists, left unchanged" in result.stdout
    assert "unit /etc/systemd/system/evcp.service: up to date" in result.stdout


def test_a_changed_unit_is_replaced_on_upgrade(tmp_path):
    install(tmp_path)
    unit = tmp_path / "etc/systemd/system/evcp.service"
    unit.write_text("[Service]\nExecStart=/old\n")

    install(tmp_path)

    assert unit.read_bytes() == UNIT.read_bytes()


def test_install_rejects_unknown_options_and_a_wrong_source(tmp_path):
    assert run(INSTALL, "--root", str(tmp_path), "--frobnicate").returncode == 2
    result = run(INSTALL, "--root", str(tmp_path), "--no-venv", "--source", str(tmp_path))
    assert result.returncode != 0
    assert "not an evcp source tree" in result.stderr
    assert not (tmp_path / "etc").exists()


# --- uninstall.sh ---

def test_uninstall_keeps_config_and_state(tmp_path):
    install(tmp_path)
    (tmp_path / "var/lib/evcp/evcp.sqlite3").write_bytes(b"queued StopTransaction")

    result = uninstall(tmp_path)

    assert not (tmp_path / "etc/systemd/system/evcp.service").exists()
    assert (tmp_path / "etc/evcp/evcp.toml").read_bytes() == EXAMPLE.read_bytes()
    assert (tmp_path / "var/lib/evcp/evcp.sqlite3").read_bytes() == b"queued StopTransaction"
    commands = would(result)
    # Stopped (contactors open) before it is disabled and its unit removed.
    stop = result.stdout.index("would: systemctl stop evcp")
    if shutil.which("systemctl"):
        assert stop < result.stdout.index(f"systemd: evcp disabled in {tmp_path} (systemctl --root)")
        assert not (tmp_path / WANTS_LINK).is_symlink(), "the WantedBy= link is gone"
    else:
        assert stop < result.stdout.index("would: systemctl disable evcp")
    assert ["systemctl", "daemon-reload"] in commands
    assert not [c for c in commands if c[0] in ("userdel", "groupdel")]


def test_uninstall_purge_removes_config_state_and_user(tmp_path):
    install(tmp_path)
    (tmp_path / "var/lib/evcp/evcp.sqlite3").write_bytes(b"x")

    result = uninstall(tmp_path, "--purge")

    assert not (tmp_path / "etc/evcp").exists()
    assert not (tmp_path / "var/lib/evcp").exists()
    assert not (tmp_path / "etc/systemd/system/evcp.service").exists()
    assert ["userdel", "evcp"] in would(result)
    # The shared device groups stay.
    assert not [c for c in would(result) if c[0] == "groupdel"]


def test_reinstall_after_uninstall_finds_the_kept_config(tmp_path):
    install(tmp_path)
    config = tmp_path / "etc/evcp/evcp.toml"
    config.write_text(config.read_text() + "# mine\n")
    uninstall(tmp_path)

    install(tmp_path)

    assert config.read_text().endswith("# mine\n")
    assert (tmp_path / "etc/systemd/system/evcp.service").read_bytes() == UNIT.read_bytes()


# --- evcp.service ---

def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values in order (an empty assignment resets the list, as in systemd)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"assignment outside a section: {raw}"
        assert "=" in line and not line.endswith("\\"), f"unexpected line: {raw}"
        key, value = (part.strip() for part in line.split("=", 1))
        current[key] = current.get(key, []) + [value] if value else []
    return sections


@pytest.fixture(scope="module")
def unit():
    return parse_unit(UNIT.read_text())


def words(section: dict[str, list[str]], key: str) -> list[str]:
    return [word for value in section.get(key, []) for word in value.split()]


def test_unit_has_the_required_directives(unit):
    service, unit_section = unit["Service"], unit["Unit"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["WatchdogSec"] == ["30s"]
    assert service["TimeoutStartSec"] == ["60"]
    assert service["TimeoutStopSec"] == ["20"]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartSec"] == ["5"]
    assert sorted(words(service, "RestartPreventExitStatus")) == ["74", "78"]
    assert "StartLimitIntervalSec" in unit_section and "StartLimitBurst" in unit_section
    assert {"network-online.target", "time-sync.target"} <= set(words(unit_section, "After"))
    assert "network-online.target" in words(unit_section, "Wants")
    assert service["User"] == ["evcp"]
    assert set(words(service, "SupplementaryGroups")) == {"gpio", "spi", "dialout"}
    assert service["StateDirectory"] == ["evcp"]
    assert service["ConfigurationDirectory"] == ["evcp"]
    assert service["ExecStart"] == ["/opt/evcp/venv/bin/evcp run --config /etc/evcp/evcp.toml"]
    # After any end, SIGKILL and the watchdog's SIGABRT included, as root ("+"): relay pins off.
    assert service["ExecStopPost"] == ["+/opt/evcp/venv/bin/evcp relays-off --config /etc/evcp/evcp.toml"]
    assert "PYTHONUNBUFFERED=1" in words(service, "Environment")
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_hardening_keeps_gpio_spi_serial_and_pwm_reachable(unit):
    service = unit["Service"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelModules",
                "ProtectControlGroups", "RestrictSUIDSGID", "LockPersonality", "RestrictRealtime",
                "RestrictNamespaces"):
        assert service.get(key) == ["yes"], key
    assert service["ProtectSystem"] == ["strict"]
    assert "/sys/class/pwm" in [p.lstrip("-") for p in words(service, "ReadWritePaths")]
    assert service["SystemCallArchitectures"] == ["native"]
    assert "CapabilityBoundingSet" in service and service["CapabilityBoundingSet"] == []
    assert "AmbientCapabilities" in service and service["AmbientCapabilities"] == []
    # A private /dev hides gpiochip, spidev and tty; read-only /sys breaks the PWM; a device
    # allow-list (DevicePolicy, DeviceAllow, ProtectClock) would have to list every device.
    for key in ("PrivateDevices", "ProtectKernelTunables", "ProtectClock"):
        assert service.get(key, ["no"]) == ["no"], key
    assert service.get("DevicePolicy", ["auto"]) == ["auto"]
    assert "DeviceAllow" not in service


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    true = shutil.which("true") or "/bin/true"
    # verify insists that ExecStart= exists; the venv is not installed here.
    text = UNIT.read_text()
    assert "ExecStart=/opt/evcp/venv/bin/evcp " in text
    copy = tmp_path / "evcp.service"
    copy.write_text(text.replace("ExecStart=/opt/evcp/venv/bin/evcp ", f"ExecStart={true} ")
                    .replace("ExecStopPost=+/opt/evcp/venv/bin/evcp ", f"ExecStopPost=+{true} "))

    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})

    # Unknown keys or sections and unparsable values are only warnings (exit status 0), printed
    # as "<path>:<line>: ..." or "evcp.service: ...": any line about our unit fails the test.
    about_unit = [line for line in (result.stdout + result.stderr).splitlines() if copy.name in line]
    assert result.returncode == 0 and not about_unit, result.stdout + result.stderr


# --- enabling, config.txt, the kernel watchdog, the venv's shebangs ---

WANTS_LINK = "etc/systemd/system/multi-user.target.wants/evcp.service"


def test_root_install_enables_the_unit_in_the_tree(tmp_path):
    result = install(tmp_path)
    if shutil.which("systemctl") is None:
        assert "no systemctl here to enable evcp" in result.stdout
        pytest.skip("systemctl is not installed: the enabling was only described")
    link = tmp_path / WANTS_LINK
    assert link.is_symlink()
    assert os.readlink(link) == "/etc/systemd/system/evcp.service"  # the deployed path, not into tmp_path
    assert f"systemd: evcp enabled in {tmp_path}" in result.stdout


def _config_txt(root: Path, text: str, where: str = "boot/firmware/config.txt") -> Path:
    path = root / where
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


PI_CONFIG_TXT = "# Raspberry Pi OS\ndtparam=audio=on\n[cm4]\notg_mode=1\n"


def test_strict_gpiod_is_added_to_config_txt_for_all_models_with_a_backup(tmp_path):
    config_txt = _config_txt(tmp_path, PI_CONFIG_TXT)
    result = install(tmp_path)
    text = config_txt.read_text()
    assert text.startswith(PI_CONFIG_TXT)
    added = text[len(PI_CONFIG_TXT):].splitlines()
    # After a [cm4] section the line would apply to a CM4 only: it goes under [all].
    assert added[-2:] == ["[all]", "dtparam=strict_gpiod"]
    assert (tmp_path / "boot/firmware/config.txt.evcp-backup").read_text() == PI_CONFIG_TXT
    assert "dtparam=strict_gpiod added" in result.stdout
    for missing in ("no dtparam=spi=on", "no dtoverlay=pwm or pwm-2chan", "no enable_uart=1"):
        assert missing in result.stdout, missing

    again = install(tmp_path)
    assert config_txt.read_text() == text, "added once"
    assert "dtparam=strict_gpiod present" in again.stdout


def test_config_txt_with_everything_gets_no_warning(tmp_path):
    text = "dtparam=spi=on\ndtoverlay=pwm,pin=18,func=2\nenable_uart=1\ndtparam=strict_gpiod\n"
    config_txt = _config_txt(tmp_path, text, "boot/config.txt")  # the pre-Bookworm place
    result = install(tmp_path)
    assert config_txt.read_text() == text
    assert "config.txt /boot/config.txt: dtparam=strict_gpiod present" in result.stdout
    assert "WARNING" not in result.stdout and "note:" not in result.stdout


def test_no_config_txt_only_warns(tmp_path):
    config_txt = _config_txt(tmp_path, PI_CONFIG_TXT)
    result = install(tmp_path, "--no-config-txt")
    assert config_txt.read_text() == PI_CONFIG_TXT
    assert "WARNING: no dtparam=strict_gpiod" in result.stdout
    assert not (tmp_path / "boot/firmware/config.txt.evcp-backup").exists()


def test_kernel_watchdog_drop_in_only_when_asked(tmp_path):
    dropin = tmp_path / "etc/systemd/system.conf.d/evcp-watchdog.conf"
    assert "kernel watchdog: not set up" in install(tmp_path).stdout
    assert not dropin.exists()
    result = install(tmp_path, "--kernel-watchdog")
    assert "RuntimeWatchdogSec=14s" in dropin.read_text().splitlines()
    assert mode(dropin) == 0o644
    assert "kernel watchdog: /etc/systemd/system.conf.d/evcp-watchdog.conf written" in result.stdout
    assert "kernel watchdog: RuntimeWatchdogSec is set" in install(tmp_path).stdout


def _run_deployed(root: Path, *command: str) -> subprocess.CompletedProcess | None:
    """Run ``command`` with root/opt/evcp mounted at /opt/evcp (a private mount namespace), as
    on the target; None when this machine cannot make one."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return None
    script = (f"mount -t tmpfs none /opt && mkdir -p /opt/evcp && mount --bind {shlex.quote(str(root / 'opt/evcp'))} "
              f"/opt/evcp && exec {shlex.join(command)}")
    result = subprocess.run([unshare, "-m", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60)
    if "mount" in result.stderr and result.returncode != 0 and "evcp" not in result.stdout:
        return None
    return result


def test_root_install_with_the_venv_writes_the_deployed_paths_into_its_scripts(tmp_path):
    root = tmp_path / "image"
    result = run(INSTALL, "--root", str(root), "--no-apt", "--source", str(REPO))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bin_dir = root / "opt/evcp/venv/bin"
    scripts = [p for p in bin_dir.iterdir() if p.is_file() and not p.is_symlink()]
    shebangs = {p.name: p.read_bytes().split(b"\n", 1)[0].decode() for p in scripts
                if p.read_bytes().startswith(b"#!")}
    assert "evcp" in shebangs and "pip" in shebangs, sorted(shebangs)
    for name, shebang in shebangs.items():
        assert shebang.startswith("#!/opt/evcp/venv/bin/python"), (name, shebang)
    for path in scripts:
        assert str(root).encode() not in path.read_bytes(), f"{path.name} still names the build directory"
    assert (root / "usr/local/bin/evcp").is_symlink()
    assert os.readlink(root / "usr/local/bin/evcp") == "/opt/evcp/venv/bin/evcp"
    deployed = _run_deployed(root, "/opt/evcp/venv/bin/evcp", "--version")
    if deployed is None:
        pytest.skip("no private mount namespace here to run the deployed tree (needs root and unshare)")
    assert deployed.returncode == 0 and deployed.stdout.startswith("evcp "), deployed.stderr
    help_text = _run_deployed(root, "/opt/evcp/venv/bin/evcp", "relays-off", "--help")
    assert help_text.returncode == 0 and "--config" in help_text.stdout
