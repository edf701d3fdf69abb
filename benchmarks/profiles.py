"""Latency and cost figures of the feature profiles beside Core (prints numbers; not a test).

In one process, with the simulated hardware, the real drivers and a real websocket to the bench
central system:
  * card tap -> StartTransaction.req, the card answered by the central system (Authorize.req
    round trip) against the card found in the Local Authorization List (LocalPreAuthorize);
  * SetChargingProfile.req received -> new current offered on the pilot;
and, in the pure core, the cost of one GetCompositeSchedule and of the per-second limit
evaluation with a full profile memory (MaxChargingProfilesInstalled profiles).

    .venv/bin/python benchmarks/profiles.py [--iterations 50]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from evcp.bench import bench_config
from evcp.bench.csms import CentralSystem
from evcp.core.smart_charging import ChargingProfiles, Limits, Transaction, profile_from_ocpp
from evcp.runtime.app import Charger
from latency import WireWatch  # this folder is on sys.path when a script runs
from measure import percentiles  # this folder is on sys.path when a script runs


def is_start(tag: str):
    return lambda d, m: d == "out" and m[0] == 2 and m[2] == "StartTransaction" and m[3]["idTag"] == tag


async def on_the_wire(iterations: int) -> None:
    csms = CentralSystem(port=0, control_port=None)
    await csms.start()
    config = bench_config(Path(tempfile.mkdtemp(prefix="evcp-bench-")), csms_url=csms.url + "/ocpp", api_port=0)
    config = replace(config, ocpp=replace(config.ocpp, keys={**config.ocpp.keys, "LocalPreAuthorize": "true",
                                                             "AuthorizationCacheEnabled": "false"}))
    charger = Charger(config)
    run = asyncio.create_task(charger.run())
    await charger.started.wait()
    while charger.controller.adapter.registration != "Accepted":
        await asyncio.sleep(0.01)
    cp = config.charge_point.id
    bench = charger.hardware.bench  # its set_pilot puts the cable in the socket first (bench socket outlet)
    frames = WireWatch(charger.trace)
    listed = [f"LIST{n:04d}" for n in range(iterations)]
    await csms.call(cp, "SendLocalList", {"listVersion": 1, "updateType": "Full", "localAuthorizationList": [
        {"idTag": tag, "idTagInfo": {"status": "Accepted"}} for tag in listed]})
    pilot = charger.hardware.connectors[0].pilot
    offered: list[tuple[float, float | None]] = []
    original_offer = pilot.offer_current

    def offer_current(amps):
        offered.append((time.perf_counter(), amps))
        return original_offer(amps)

    pilot.offer_current = offer_current
    await asyncio.to_thread(bench.set_pilot, 1, "B")
    await asyncio.sleep(0.3)

    async def session(tag: str) -> float:
        t_tap = time.perf_counter()
        await asyncio.to_thread(bench.present_tag, tag)
        started = await frames.wait_for(is_start(tag), t_tap)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(bench.present_tag, tag)  # stops it
        await asyncio.sleep(0.3)
        return (started - t_tap) * 1000

    remote = [await session(f"CSMS{n:04d}") for n in range(iterations)]
    local = [await session(tag) for tag in listed]

    await asyncio.to_thread(bench.set_pilot, 1, "C")
    await asyncio.to_thread(bench.present_tag, "LIMITS01")
    while charger.controller.station.connectors[1].offered_a is None:
        await asyncio.sleep(0.05)
    limit_applied = []
    for n in range(iterations):
        await asyncio.sleep(5.1)  # the pilot duty changes at most every 5 s (IEC 61851-1)
        amps = 10.0 + n % 10
        before = len(offered)
        sent = time.perf_counter()
        await csms.call(cp, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {
            "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative", "chargingSchedule": {
                "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": amps}]}}})
        received = await frames.wait_for(lambda d, m: d == "in" and m[0] == 2 and m[2] == "SetChargingProfile", sent)
        while len(offered) == before:
            await asyncio.sleep(0.0005)
        limit_applied.append((offered[before][0] - received) * 1000)

    print("in-process, simulated hardware, real drivers and websocket:")
    print(f"  tap -> StartTransaction.req, Authorize round trip   {percentiles(remote)}")
    print(f"  tap -> StartTransaction.req, Local Authorization List {percentiles(local)}")
    print(f"  SetChargingProfile.req -> pilot current changed      {percentiles(limit_applied)}")
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    await csms.stop()


def core_costs(repeat: int) -> None:
    limits = Limits(connectors=2, max_current_a=32.0, phases=3, voltage_v=230.0)
    profiles = ChargingProfiles(limits)
    now = 1_800_000_000.0
    transactions = {1: Transaction(7, now - 600)}
    periods = [{"start_period": 600 * i, "limit": 6.0 + i % 20} for i in range(limits.max_periods)]
    for n in range(limits.max_profiles):
        purpose, connector = [("ChargePointMaxProfile", 0), ("TxDefaultProfile", 1), ("TxProfile", 1)][n % 3]
        kind = "Recurring" if n % 2 else "Absolute"
        payload = {"charging_profile_id": n + 1, "stack_level": n // 3, "charging_profile_purpose": purpose,
                   "charging_profile_kind": kind, "recurrency_kind": "Daily" if kind == "Recurring" else None,
                   "charging_schedule": {"charging_rate_unit": "W" if n % 4 == 0 else "A",
                                         "start_schedule": "2026-11-21T00:00:00Z",
                                         "charging_schedule_period": periods}}
        if purpose == "TxProfile":
            payload["transaction_id"] = 7
        accepted, why = profiles.set(profile_from_ocpp(connector, payload), transactions)
        assert accepted, why
    composite, limit = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        profiles.composite(1, now, 86400, "A", transactions)
        composite.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        profiles.limit_a(1, now, transactions)
        limit.append((time.perf_counter() - t) * 1000)
    print(f"pure core, {len(profiles.profiles)} profiles of {limits.max_periods} periods:")
    print(f"  GetCompositeSchedule, 24 h window                   {percentiles(composite)}")
    print(f"  limit now (evaluated every second per connector)    {percentiles(limit)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    core_costs(200)
    asyncio.run(on_the_wire(args.iterations))


if __name__ == "__main__":
    main()
