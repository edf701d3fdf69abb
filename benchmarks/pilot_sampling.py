"""ADC pilot sampling: samples/s, readings/s, read_state() cost and event-loop blocking (prints numbers).

The real ``AdcPilot`` samples a ``SimulatedCpAdc`` (EV in state C, 16 A offered, 1 kHz PWM on a
fake sysfs tree) while an asyncio loop does what the controller's pilot task does: calls
``read_state()`` every 10 ms. A second task sleeps 1 ms at a time and records how late it wakes:
that lateness is the time the loop was blocked. Each SPI conversion takes ``--conversion-us``
(hal-realism.md §3 expects 80..120 us per gpiozero sample on a Pi 4), either holding the GIL all
along (``--spi gil``: lgpio's SWIG wrapper does not release it) or sleeping (``--spi sleep``:
spidev releases it during the transfer).

Two ways to sample are compared:
  * thread:  AdcPilot's own sampling thread; read_state() returns the latest reading;
  * in-loop: one burst taken inside the loop per read (what a synchronous ADC pilot does).

    .venv/bin/python benchmarks/pilot_sampling.py [--seconds 5] [--conversion-us 100] [--spi gil|sleep]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import resource
import tempfile
import time

from evcp.config import PilotConfig
from evcp.hal.pilot import AdcPilot, SysfsPwm
from evcp.mocks.cp_adc import EV_RESISTANCE_OHM, SimulatedCpAdc
from evcp.mocks.sysfs_pwm import FakeSysfsPwm
from measure import percentiles  # this folder is on sys.path when a script runs

READ_EVERY_S = 0.01
"""The controller's pilot loop period (controller/runtime/controller.py, ADC backend)."""
PROBE_SLEEP_S = 0.001


class SleepingConversion:
    """A SimulatedCpAdc whose conversion sleeps (GIL released) instead of spinning."""

    def __init__(self, adc: SimulatedCpAdc, conversion_s: float):
        self._adc, self._conversion_s = adc, conversion_s

    @property
    def raw_value(self) -> int:
        time.sleep(self._conversion_s)
        return self._adc.raw_value


async def run(mode: str, seconds: float, conversion_s: float, spi: str) -> None:
    with FakeSysfsPwm(tempfile.mkdtemp(prefix="evcp-bench-pwm-")) as tree:
        adc = SimulatedCpAdc(tree, ev_resistance_ohm=lambda: EV_RESISTANCE_OHM["C"], seed=1,
                             conversion_s=conversion_s if spi == "gil" else 0.0)
        source = adc if spi == "gil" else SleepingConversion(adc, conversion_s)
        pilot = AdcPilot(PilotConfig(backend="adc"), SysfsPwm(0, 0, root=tree.root), adc=source,
                         sampling=mode == "thread")
        pilot.offer_current(16)
        await asyncio.sleep(0.6)  # past the blanking after the duty change
        reads_before, cpu_before = adc.reads, time.process_time()
        read_ms: list[float] = []
        lag_ms: list[float] = []
        states: collections.Counter[str | None] = collections.Counter()
        stop = time.perf_counter() + seconds

        async def probe() -> None:
            while time.perf_counter() < stop:
                asked = time.perf_counter()
                await asyncio.sleep(PROBE_SLEEP_S)
                lag_ms.append((time.perf_counter() - asked - PROBE_SLEEP_S) * 1000)

        async def reader() -> None:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                state = pilot.read_state() if mode == "thread" else pilot.measure().state
                read_ms.append((time.perf_counter() - started) * 1000)
                states[state] += 1
                await asyncio.sleep(READ_EVERY_S)

        started = time.perf_counter()
        await asyncio.gather(probe(), reader())
        elapsed = time.perf_counter() - started
        samples, cpu = adc.reads - reads_before, time.process_time() - cpu_before
        pilot.release()
    readings = ", ".join(f"{k or 'None'} {v}" for k, v in sorted(states.items(), key=lambda kv: str(kv[0])))
    print(f"{mode}:")
    print(f"  samples/s                      {samples / elapsed:9.0f}")
    print(f"  read_state() in the loop       {percentiles(read_ms)}")
    print(f"  loop blocked (1 ms sleep late) {percentiles(lag_ms)}")
    print(f"  readings (EV in C)             {readings}")
    print(f"  CPU                            {cpu / elapsed * 100:5.1f} % of one core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conversion-us", type=float, default=100.0)
    parser.add_argument("--spi", choices=("gil", "sleep"), default="gil")
    parser.add_argument("--mode", choices=("thread", "in-loop", "both"), default="both")
    args = parser.parse_args()
    print(f"ADC pilot, {args.conversion_us:g} us per conversion ({args.spi}), {args.seconds:g} s per mode, "
          f"read_state() every {READ_EVERY_S * 1000:g} ms")
    for mode in (("thread", "in-loop") if args.mode == "both" else (args.mode,)):
        asyncio.run(run(mode, args.seconds, args.conversion_us / 1e6, args.spi))
    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
