"""What the HTTP layer costs: the hand-written HTTP/1.1 server before, aiohttp now, side by side
in one run. Prints numbers; asserts nothing.

    python benchmarks/http_footprint.py [--baseline REV] [--candidate REV] [--rounds N] [--idle-seconds S]

For each tree (``--baseline``: by default the parent of the commit that moved controller/api/http.py
onto aiohttp; ``--candidate``: by default the working tree, or that commit itself to see the switch
alone), ``evcp run`` with simulated hardware is started against a bench central system,
alternating the two trees round by round:
  * start: process start -> GET /api/status answers 200
  * RSS (VmRSS) once the charger has been idle for --idle-seconds
  * GET /api/status latency, p50 and p99 of 200 sequential requests (a new connection each)
  * the import floor: RSS and time of ``import evcp.runtime.app`` alone
Both trees run as plain directories (``python -S`` with the venv's site-packages on PYTHONPATH), so
neither gets the editable install's import hook. Machines are shared and noisy: compare within
one run.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from evcp.bench.csms import CentralSystem
from measure import free_port, rss_mb  # this folder is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = {"controller": "evcp", "hal": "evcp/hal", "hardware-mocks": "evcp/mocks"}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def before_aiohttp() -> str:
    """The parent of the commit that moved controller/api/http.py onto aiohttp: everything else as
    it was then, so the comparison measures the HTTP layer and not the features added since."""
    for rev in git("log", "--reverse", "--format=%H", "--", "controller/api/http.py").split():
        if re.search(r"^\s*(import|from) aiohttp\b", git("show", f"{rev}:controller/api/http.py"), re.M):
            return git("rev-parse", f"{rev}^").strip()
    raise SystemExit("no commit moved controller/api/http.py onto aiohttp")


def lay_out(source: Path, target: Path) -> Path:
    """The package tree pyproject.toml maps (controller -> evcp, hal -> evcp.hal, ...)."""
    for folder, package in LAYOUT.items():
        shutil.copytree(source / folder, target / package, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return target


def tree_at(rev: str, workdir: Path) -> Path:
    checkout = workdir / "checkout"
    checkout.mkdir()
    archive = subprocess.run(["git", "archive", rev, *LAYOUT], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive, check=True)
    return lay_out(checkout, workdir / "pkg")


def environment(tree: Path) -> dict[str, str]:
    return {"PYTHONPATH": ":".join([str(tree), *site.getsitepackages()]), "PYTHONUNBUFFERED": "1",
            "PATH": "/usr/bin:/bin"}


def import_floor(tree: Path) -> tuple[float, float]:
    code = ("import time; t = time.perf_counter(); import evcp.runtime.app; d = time.perf_counter() - t; "
            "rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]; "
            "print(d, int(rss) / 1024)")
    out = subprocess.run([sys.executable, "-S", "-c", code], env=environment(tree), check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]) * 1000, float(out[1])


def one_charger(tree: Path, csms_url: str, workdir: Path, idle_s: float) -> dict[str, float]:
    port = free_port()
    state = Path(tempfile.mkdtemp(dir=workdir))
    config = state / "evcp.toml"
    config.write_text(f'[charge_point]\nid = "CP-FOOT"\n[ocpp]\ncsms_url = "{csms_url}"\n[hardware]\nbackend = "mock"\n'
                      f'[api]\nlisten = "127.0.0.1:{port}"\n[storage]\nstate_dir = "{state}"\n')
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-S", "-m", "evcp", "run", "--config", str(config)],
                               env=environment(tree), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/status"
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.perf_counter() - started > 30:
                    raise SystemExit(f"evcp run in {tree} did not answer {url}")
                time.sleep(0.005)
        start_ms = (time.perf_counter() - started) * 1000
        time.sleep(idle_s)
        rss = rss_mb(process.pid)
        latencies = []
        for _ in range(200):
            t = time.perf_counter()
            urllib.request.urlopen(url, timeout=5).read()
            latencies.append((time.perf_counter() - t) * 1000)
        latencies.sort()
        return {"start_ms": start_ms, "rss_mb": rss, "p50_ms": statistics.median(latencies),
                "p99_ms": latencies[int(0.99 * (len(latencies) - 1))]}
    finally:
        process.terminate()
        process.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision with the hand-written server "
                                           "(default: the parent of the commit that moved it onto aiohttp)")
    parser.add_argument("--candidate", help="git revision on aiohttp (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    baseline = args.baseline or before_aiohttp()

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    csms = CentralSystem(port=0, control_port=None)
    asyncio.run_coroutine_threadsafe(csms.start(), loop).result(10)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        (workdir / "old").mkdir()
        (workdir / "new").mkdir()
        trees = {f"hand-written ({baseline[:7]})": tree_at(baseline, workdir / "old"),
                 f"aiohttp ({args.candidate[:7]})" if args.candidate else "aiohttp (working tree)":
                     tree_at(args.candidate, workdir / "new") if args.candidate else lay_out(ROOT, workdir / "new")}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        floors: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                floors[name].append(import_floor(tree))
                results[name].append(one_charger(tree, csms.url + "/ocpp", workdir, args.idle_seconds))
    print(f"evcp run, simulated hardware, {args.rounds} rounds alternating, idle {args.idle_seconds:g} s; medians")
    print(f"{'':28} {'start->API 200':>15} {'RSS idle':>10} {'GET p50':>9} {'GET p99':>9} "
          f"{'import ms':>10} {'import RSS':>11}")
    for name in trees:
        rows = results[name]

        def median(key: str) -> float:
            return statistics.median(row[key] for row in rows)

        print(f"{name:28} {median('start_ms'):12.0f} ms {median('rss_mb'):7.1f} MB {median('p50_ms'):6.2f} ms "
              f"{median('p99_ms'):6.2f} ms {statistics.median(f[0] for f in floors[name]):7.0f} ms "
              f"{statistics.median(f[1] for f in floors[name]):8.1f} MB")
    asyncio.run_coroutine_threadsafe(csms.stop(), loop).result(10)


if __name__ == "__main__":
    main()
