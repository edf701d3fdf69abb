"""The status page in a real headless browser (Debian's Chromium, driven by Playwright), against a
real `evcp bench`: a person plugs in, taps cards and charges with the page's own buttons, and the
page shows what the charger does, pushed to it (no polling).

Chromium comes from Debian (`apt-get install chromium`, done by ./dev.sh test as root); Playwright
never downloads a browser of its own here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import evcp
from tests.ports import free_port

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
# The flags of a closed machine: no background connections, no first-run work, no sandbox as root.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SECONDS = 1000  # Playwright waits in milliseconds
DURATION = re.compile(r"^(\d+ d )?\d\d:\d\d:\d\d$")


def seconds_of(duration: str) -> int:
    """The page's session duration, "[D d ]HH:MM:SS", in seconds."""
    days, _, clock = duration.rpartition(" d ")
    hours, minutes, secs = (int(part) for part in clock.split(":"))
    return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + secs



@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (./dev.sh test does it as root)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def bench(tmp_path, wait_until):
    api, csms, control_port = free_port(), free_port(), free_port()
    log = open(tmp_path / "bench.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "evcp", "bench", "--state-dir", str(tmp_path / "state"),
                                "--listen", f"127.0.0.1:{api}", "--csms-listen", f"127.0.0.1:{csms}",
                                "--control", f"127.0.0.1:{control_port}"],
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    class Bench:
        url = f"http://127.0.0.1:{api}"
        control_url = f"http://127.0.0.1:{control_port}"

        @staticmethod
        def control(path: str, body: dict) -> dict:
            request = urllib.request.Request(Bench.control_url + path, json.dumps(body).encode(),
                                             {"Content-Type": "application/json"})
            return json.loads(urllib.request.urlopen(request, timeout=10).read())

        @staticmethod
        def transactions() -> list[dict]:
            return json.loads(urllib.request.urlopen(Bench.control_url + "/transactions", timeout=10).read())[
                "transactions"]

    def registered():
        if process.poll() is not None:
            raise AssertionError(f"evcp bench exited with {process.returncode}: {(tmp_path / 'bench.log').read_text()}")
        status = json.loads(urllib.request.urlopen(Bench.url + "/api/status", timeout=5).read())
        return status["ocpp"]["registration"] == "Accepted"

    wait_until(registered, 20, "the bench's charger registered")
    yield Bench
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def test_a_person_charges_through_the_status_page(browser, bench, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page()
    status_polls = []
    page.on("request", lambda request: "/api/status" in request.url and status_polls.append(request.url))
    page.goto(bench.url + "/", wait_until="domcontentloaded")
    expect(page.locator("#cpid")).to_have_text("CP-BENCH-01", timeout=20 * SECONDS)
    expect(page.locator("#conn")).to_have_text("connected", timeout=20 * SECONDS)
    expect(page.locator("#reg")).to_have_text("Accepted")
    expect(page.locator("#proto")).to_have_text("OCPP 1.6")  # the bench's ocpp.version, agreed in the handshake
    expect(page.locator("#proto")).to_have_attribute("title", "ocpp.version 1.6; speaking OCPP 1.6")
    expect(page.locator("#ver")).to_have_text(evcp.__version__)
    expect(page.locator("#uptime")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    card = page.locator("#conn-1")
    expect(card.locator("[data-f=st]")).to_have_text("Available")
    expect(card.locator("[data-f=rb]")).to_have_text("OPEN")
    expect(card.locator("[data-f=meas]")).to_have_text("measured open")
    # The bench is a socket outlet: the cable (PP) and lock rows are shown.
    expect(card.locator("dd[data-row=cable]")).to_be_visible()
    expect(card.locator("[data-f=cable]")).to_have_text("no cable")
    expect(card.locator("dd[data-row=lock]")).to_be_visible()
    expect(card.locator("[data-f=lock]")).to_have_text("unlocked")

    # A blocked card: the page says Blocked, not "ok".
    bench.control("/policy", {"authorize_overrides": {"DEADBEEF": "Blocked"}})
    page.locator("button[data-tag=DEADBEEF]").click()
    expect(page.locator("#auth")).to_have_text(re.compile(r"^DEADBEEF: Blocked"), timeout=10 * SECONDS)
    expect(page.locator("#msg")).to_have_text("Card DEADBEEF: Blocked")
    expect(card.locator("[data-f=st]")).to_have_text("Available")

    # Plug in, tap an accepted card, request charge: all with the page's buttons.
    card.get_by_role("button", name="Plug in (B)").click()
    page.locator("#tapb").click()
    expect(page.locator("#auth")).to_have_text(re.compile(r"^04A1B2C3: Accepted"), timeout=10 * SECONDS)
    card.get_by_role("button", name="Request charge (C)").click()
    expect(card.locator("[data-f=st]")).to_have_text("Charging", timeout=10 * SECONDS)
    expect(card.locator("[data-f=rb]")).to_have_text("CLOSED")
    expect(card.locator("[data-f=meas]")).to_have_text("measured closed")
    expect(card.locator("[data-f=pw]")).to_have_text("7.4 kW", timeout=10 * SECONDS)
    expect(card.locator("[data-f=ph]")).to_have_text(re.compile(r"^L1 \d+\.\d A \d+ V · L2 "), timeout=10 * SECONDS)
    duration = card.locator("[data-f=dur]")
    expect(duration).to_have_text(DURATION, timeout=10 * SECONDS)
    started_at = duration.text_content()
    expect(duration).not_to_have_text(started_at, timeout=5 * SECONDS)  # it counts on by itself
    expect(duration).to_have_text(DURATION)
    assert seconds_of(duration.text_content()) > seconds_of(started_at)
    expect(card.locator("[data-f=cable]")).to_have_text("32 A cable")  # the simulated EV's cable, by its PP
    expect(card.locator("[data-f=lock]")).to_have_text("locked")
    [transaction] = bench.transactions()
    expect(card.locator("[data-f=tx]")).to_have_text(str(transaction["transaction_id"]))

    # The chart grows with every push while charging: power and offered current.
    chart = card.locator("[data-f=chart]")
    expect(chart).to_have_attribute("data-count", re.compile(r"^([3-9]|\d\d+)$"), timeout=15 * SECONDS)
    first = int(chart.get_attribute("data-count"))
    expect(chart).to_have_attribute("data-count", re.compile(r"^\d+$"))
    page.wait_for_function("n => Number(document.querySelector('#conn-1 [data-f=chart]').dataset.count) >= n + 2",
                           arg=first, timeout=10 * SECONDS)
    assert len(card.locator("[data-f=pwline]").get_attribute("points").split()) >= first + 2
    assert card.locator("[data-f=curline]").get_attribute("points").strip()
    expect(card.locator("[data-f=lim]")).to_have_text(re.compile(r"^32\.0 A offered"))
    assert status_polls == [], f"the page polled {len(status_polls)} times instead of listening to the push"

    # The contactor welds while charging; unplugging then shows commanded OPEN, measured closed.
    page.locator("input[data-dev=relay]").check()
    expect(page.locator("#msg")).to_have_text("Fault relay on: done")
    card.get_by_role("button", name="Unplug (A)").click()
    expect(card.locator("[data-f=rb]")).to_have_text("OPEN", timeout=10 * SECONDS)
    expect(card.locator("[data-f=meas]")).to_have_text("measured closed (welded)", timeout=10 * SECONDS)
    expect(card.locator("[data-f=st]")).to_have_text("Faulted", timeout=10 * SECONDS)
    expect(card.locator("[data-f=err]")).to_have_text(re.compile("PowerSwitchFailure"))

    # After a reload the fault checkbox shows the real fault state, and the last session's chart is kept.
    page.reload(wait_until="domcontentloaded")
    expect(page.locator("#conn")).to_have_text("connected", timeout=10 * SECONDS)
    expect(page.locator("input[data-dev=relay]")).to_be_checked(timeout=10 * SECONDS)
    expect(page.locator("input[data-dev=meter]")).not_to_be_checked()
    expect(page.locator("#conn-1 [data-f=chart]")).to_have_attribute("data-count", re.compile(r"^([3-9]|\d\d+)$"))
    expect(page.locator("#conn-1 [data-f=chartnote]")).to_have_text("last session")
    page.locator("input[data-dev=relay]").uncheck()
    # The contacts read open again, but a contactor once seen welded stays a fault until restart.
    expect(page.locator("#conn-1 [data-f=meas]")).to_have_text("measured open (welded)", timeout=10 * SECONDS)

    # The central system goes away: the page says why the link is down and when the next attempt is.
    bench.control("/policy", {"accept_connections": False})
    bench.control("/disconnect", {"cp": "CP-BENCH-01"})
    expect(page.locator("#conn")).to_have_text("disconnected", timeout=10 * SECONDS)
    expect(page.locator("#proto")).to_have_attribute("title", "ocpp.version 1.6; not connected")
    expect(page.locator("#linkerr")).to_have_text(re.compile(r"^Link: .*503.*; next attempt at \d\d:\d\d:\d\d \(in \d+ s\)$"),
                                                  timeout=15 * SECONDS)
    bench.control("/policy", {"accept_connections": True})
    expect(page.locator("#conn")).to_have_text("connected", timeout=30 * SECONDS)
    expect(page.locator("#linkerr")).to_have_text("")
    page.screenshot(path=str(tmp_path / "status-page.png"), full_page=True)
    page.close()
