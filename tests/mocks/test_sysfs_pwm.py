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
