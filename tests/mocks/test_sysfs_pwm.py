"""The fake /sys/class/pwm tree behaves like the kernel's for export and readback."""

import os
import time

import pytest

from evcp.hal import HardwareError
from evcp.hal.pilot import SysfsPwm
from evcp.mocks.sysfs_pwm import FakeSysfsPwm


def write(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def wait_for(path, timeout_s=2.0):
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.002)


def test_export_creates_a_channel_with_its_attributes(tmp_path):
    with FakeSysfsPwm(tmp_path, npwm=2) as fake:
        assert (tmp_path / "pwmchip0" / "npwm").read_text() == "2\n"
        assert not fake.channel(0).exported
        write(tmp_path / "pwmchip0" / "export", "1\n")
        wait_for(tmp_path / "pwmchip0" / "pwm1")
        state = fake.channel(1)
        assert state.exported and state.period_ns == 0 and not state.enabled
        assert state.polarity == "normal"
        assert sorted(p.name for p in (tmp_path / "pwmchip0" / "pwm1").iterdir()) == [
            "duty_cycle", "enable", "period", "polarity",
        ]


def test_export_of_a_channel_the_chip_lacks_creates_nothing(tmp_path):
    with FakeSysfsPwm(tmp_path, npwm=2) as fake:
        write(tmp_path / "pwmchip0" / "export", "5\n")
        write(tmp_path / "pwmchip0" / "export", "0\n")
        wait_for(tmp_path / "pwmchip0" / "pwm0")
        assert fake.export_requests == ["5", "0"]
        assert not (tmp_path / "pwmchip0" / "pwm5").exists()


def test_readback_reports_duty_as_a_fraction(tmp_path):
    with FakeSysfsPwm(tmp_path, chip=2, exported=(0,)) as fake:
        fake.poke(0, "period", "1000000\n")
        fake.poke(0, "duty_cycle", "266667\n")
        fake.poke(0, "enable", "1\n")
        state = fake.channel(0)
        assert state.enabled and state.duty == 0.266667
        assert (tmp_path / "pwmchip2").is_dir()


def test_after_close_export_fails_instead_of_hanging(tmp_path):
    fake = FakeSysfsPwm(tmp_path)
    fake.close()
    fake.close()
    with pytest.raises(HardwareError, match="export"):
        SysfsPwm(0, 0, root=tmp_path)


# --- Raspberry Pi layouts ------------------------------------------------------


@pytest.mark.parametrize(("board", "kernel", "chips"), [
    ("pi4", "6.6", {0: "fe20c000.pwm"}),
    ("pi4", "6.12", {0: "fe20c000.pwm"}),
    ("pi5", "6.6", {0: "107d517a80.pwm", 2: "1f00098000.pwm", 6: "1f0009c000.pwm"}),
    ("pi5", "6.12", {0: "1f00098000.pwm", 1: "1f0009c000.pwm"}),
])
def test_each_chip_links_to_its_device_as_the_kernel_lays_it_out(tmp_path, board, kernel, chips):
    with FakeSysfsPwm.raspberry_pi(tmp_path, board, kernel) as fake:
        assert fake.root == tmp_path / "sys" / "class" / "pwm"
        assert sorted(p.name for p in fake.root.iterdir()) == [f"pwmchip{n}" for n in sorted(chips)]
        for number, node in chips.items():
            entry = fake.root / f"pwmchip{number}"
            assert entry.is_symlink()  # /sys/class/pwm/pwmchipN -> ../../devices/.../pwm/pwmchipN
            resolved = entry.resolve()
            assert resolved.parent.name == "pwm" and resolved.parent.parent.name == node
            assert (entry / "device").resolve().name == node
            assert str(resolved).startswith(str(tmp_path / "sys" / "devices" / "platform"))


@pytest.mark.parametrize(("board", "compatible", "model"), [
    ("pi4", b"raspberrypi,4-model-b\0brcm,bcm2711\0", "Raspberry Pi 4 Model B"),
    ("pi5", b"raspberrypi,5-model-b\0brcm,bcm2712\0", "Raspberry Pi 5 Model B"),
])
def test_the_device_tree_names_the_board(tmp_path, board, compatible, model):
    with FakeSysfsPwm.raspberry_pi(tmp_path, board) as fake:
        assert (fake.device_tree / "compatible").read_bytes() == compatible
        text = (fake.device_tree / "model").read_bytes()
        assert text.endswith(b"\0") and text.decode().startswith(model)


def test_the_pi5s_rp1_pwm_has_four_channels_and_exports_on_its_own_chip(tmp_path):
    with FakeSysfsPwm.raspberry_pi(tmp_path, "pi5", "6.6") as fake:
        assert fake.chip == 2
        assert (fake.root / "pwmchip2" / "npwm").read_text() == "4\n"
        assert (fake.root / "pwmchip0" / "npwm").read_text() == "2\n"
        write(fake.root / "pwmchip2" / "export", "2\n")
        wait_for(fake.root / "pwmchip2" / "pwm2")
        write(fake.root / "pwmchip6" / "export", "3\n")
        wait_for(fake.root / "pwmchip6" / "pwm3")
        assert fake.exports == [(2, "2"), (6, "3")]
        assert fake.export_requests == ["2"]  # the header chip's only
        assert fake.channel(2).exported and fake.channel(3, chip=6).exported
        assert not fake.channel(2, chip=0).exported


def test_sysfs_pwm_runs_unchanged_on_a_linked_chip(tmp_path):
    with FakeSysfsPwm.raspberry_pi(tmp_path, "pi5", "6.12") as fake:
        pwm = SysfsPwm(0, 2, root=fake.root)
        pwm.set_duty(0.1)
        state = fake.channel(2, chip=0)
        assert (state.period_ns, state.duty_cycle_ns, state.enabled) == (1_000_000, 100_000, True)
        assert pwm.location.device.name == "1f00098000.pwm"
