"""Latency and footprint of the charger on this machine. Prints numbers; asserts nothing.

    python benchmarks/latency.py [--iterations N] [--idle-seconds S]

In-process part (simulated hardware, the real drivers, a real websocket to the
bench central system in the same process):
  * pilot leaves C -> contactor coil released   (IEC 61851-1 budget 100 ms, target <= 20 ms)
  * StartTransaction.conf received -> PWM offers current   (target <= 10 ms)
  * PWM offers current -> coil energised: the simulated EV obeys the pilot, so it closes S2
    (state C) only once it sees the PWM, and C is believed after 0.5 s of stable readings
    (IEC 61851-1 allows the EVSE up to 3 s to close after C)
  * card tap -> Authorize.req on the wire
Timestamps come from the coil GPIO's own change callback and the OCPP frame trace.

Process part (`evcp run` and the central system as separate processes):
  * process start -> BootNotification received by the central system
  * RSS and CPU share of an idle charger over --idle-seconds (targets <= 60 MB, <= 1 % of a core)
Machines are shared and noisy: compare ratios within one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from evcp.bench import bench_config
from evcp.bench.csms import CentralSystem
from evcp.mocks.pins import watched_pin
from evcp.runtime.app import Charger
from measure import cpu_seconds, epoch, free_port, percentiles, rss_mb  # this folder is on sys.path when a script runs



class CoilWatch:
    """perf_counter() of every change of the contactor coil GPIO, from the pin's own callback."""

    def __init__(self, factory, pin: int):
        self.pin = watched_pin(factory, pin)
        self.changes: list[tuple[float, bool]] = []
        self.changed = threading.Event()
        self.pin.listeners.append(self._record)

    def _record(self) -> None:
        self.changes.append((time.perf_counter(), bool(self.pin.state)))
        self.changed.set()

    async def wait_for(self, energised: bool, after: float, timeout: float = 5.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for at, state in self.changes:
                if at >= after and state == energised:
                    return at
            await asyncio.sleep(0.001)
        raise TimeoutError(f"coil never became {'energised' if energised else 'released'}")


class WireWatch:
    """perf_counter() of frames as the charger's link sends or receives them."""

    def __init__(self, trace):
        self.frames: list[tuple[float, str, list]] = []
        original = trace.record

        def record(direction: str, frame: str) -> None:
            self.frames.append((time.perf_counter(), direction, json.loads(frame)))
            original(direction, frame)

        trace.record = record

    async def wait_for(self, predicate, after: float, timeout: float = 5.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for at, direction, message in list(self.frames):
                if at >= after and predicate(direction, message):
                    return at
            await asyncio.sleep(0.001)
        raise TimeoutError("frame never seen")


async def in_process(iterations: int) -> None:
    csms = CentralSystem(port=0, control_port=None)
    await csms.start()
    config = bench_config(Path(tempfile.mkdtemp(prefix="evcp-bench-")), csms_url=csms.url + "/ocpp", api_port=0)
    charger = Charger(config)
    run = asyncio.create_task(charger.run())
    await charger.started.wait()
    while charger.controller.adapter.registration != "Accepted":
        await asyncio.sleep(0.01)
    bench = charger.hardware.bench  # its set_pilot puts the cable in the socket first (bench socket outlet)
    from gpiozero import Device

    coil = CoilWatch(Device.pin_factory, config.hardware.connectors[0].relay.pin)
    simulated_ev = bench.simulated[0].ev
    offers: list[float] = []  # perf_counter() of each PWM offer the simulated EV saw
    seen_by_ev = simulated_ev.pwm_changed

    def pwm_changed(duty):
        seen_by_ev(duty)
        if simulated_ev.offered_a:
            offers.append(time.perf_counter())

    simulated_ev.pwm_changed = pwm_changed
    wire = WireWatch(charger.trace)
    leave_c, conf_to_offer, offer_to_close, tap_to_authorize = [], [], [], []
    starts: dict[str, float] = {}

    for n in range(iterations):
        tag = f"BENCH{n:04d}"
        await asyncio.to_thread(bench.set_pilot, 1, "C")
        await asyncio.sleep(0.7)  # C is believed after 0.5 s of stable readings
        t_tap = time.perf_counter()
        await asyncio.to_thread(bench.present_tag, tag)
        sent = await wire.wait_for(lambda d, m: d == "out" and m[0] == 2 and m[2] == "Authorize", t_tap)
        tap_to_authorize.append((sent - t_tap) * 1000)

        def start_call(d, m, tag=tag):
            if d == "out" and m[0] == 2 and m[2] == "StartTransaction" and m[3]["idTag"] == tag:
                starts[tag] = m[1]
                return True
            return False

        await wire.wait_for(start_call, t_tap)
        conf_at = await wire.wait_for(lambda d, m: d == "in" and m[0] == 3 and m[1] == starts[tag], t_tap)
        closed_at = await coil.wait_for(True, conf_at)
        offered_at = next(at for at in offers if at >= conf_at)
        conf_to_offer.append((offered_at - conf_at) * 1000)
        offer_to_close.append((closed_at - offered_at) * 1000)
        await asyncio.sleep(0.2)
        t_leave = [0.0]

        def leave():
            t_leave[0] = time.perf_counter()
            bench.set_pilot(1, "B")

        await asyncio.to_thread(leave)
        opened_at = await coil.wait_for(False, t_leave[0])
        leave_c.append((opened_at - t_leave[0]) * 1000)
        await asyncio.to_thread(bench.present_tag, tag)  # ends the transaction
        await asyncio.sleep(0.2)

    print("in-process, simulated hardware, real drivers and websocket:")
    print(f"  pilot leaves C -> contactor open       {percentiles(leave_c)}")
    print(f"  StartTransaction.conf -> PWM offered   {percentiles(conf_to_offer)}")
    print(f"  PWM offered -> contactor on (EV to C)  {percentiles(offer_to_close)}")
    print(f"  card tap -> Authorize.req sent         {percentiles(tap_to_authorize)}")
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    await csms.stop()


def processes(boots: int, idle_seconds: float) -> None:
    csms = subprocess.Popen([sys.executable, "-m", "evcp.bench.csms", "--listen", "127.0.0.1:0",
                             "--control", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    match = re.search(r"(ws://\S+) control (http://\S+)", csms.stdout.readline())
    ws_url, control = match.group(1), match.group(2)
    work = Path(tempfile.mkdtemp(prefix="evcp-bench-"))
    boot_ms = []
    try:
        for n in range(boots):
            config = work / "evcp.toml"
            config.write_text(f'[charge_point]\nid = "CP-BOOT-{n}"\n[ocpp]\ncsms_url = "{ws_url}/ocpp"\n'
                              f'[hardware]\nbackend = "mock"\n[api]\nlisten = "127.0.0.1:{free_port()}"\n'
                              f'[storage]\nstate_dir = "{work}"\n')
            started = time.time()
            charger = subprocess.Popen([sys.executable, "-m", "evcp", "run", "--config", str(config)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            boot_at = None
            while boot_at is None and time.time() - started < 30:
                with urllib.request.urlopen(f"{control}/messages?cp=CP-BOOT-{n}") as response:
                    for m in json.loads(response.read())["messages"]:
                        if m["action"] == "BootNotification" and m["direction"] == "received":

                            boot_at = epoch(m["time"])
                time.sleep(0.02)
            boot_ms.append((boot_at - started) * 1000)
            if n < boots - 1:
                charger.terminate()
                charger.wait(10)
        print("separate processes (evcp run, mock hardware, bench central system):")
        print(f"  process start -> BootNotification     {percentiles(boot_ms)}")
        time.sleep(2)
        cpu0, t0 = cpu_seconds(charger.pid), time.monotonic()
        rss = [rss_mb(charger.pid)]
        while time.monotonic() - t0 < idle_seconds:
            time.sleep(1)
            rss.append(rss_mb(charger.pid))
        share = (cpu_seconds(charger.pid) - cpu0) / (time.monotonic() - t0) * 100
        print(f"  idle for {idle_seconds:.0f} s: RSS {statistics.median(rss):.1f} MB (max {max(rss):.1f} MB), "
              f"CPU {share:.2f} % of one core")
        charger.terminate()
        charger.wait(10)
    finally:
        csms.terminate()
        csms.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--boots", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(in_process(args.iterations))
    processes(args.boots, args.idle_seconds)


if __name__ == "__main__":
    main()
