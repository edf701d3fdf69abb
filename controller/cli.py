"""``evcp``: run the charger, run the bench, check a configuration."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from evcp.bench import bench_config, bench_config_path
from evcp.runtime.systemd import configure_logging

EX_CONFIG = 78
"""sysexits.h: configuration error. The systemd unit does not restart on it."""
EX_IOERR = 74
"""sysexits.h: the state database cannot be used. Nor on this: it needs a person."""
EX_UNAVAILABLE = 69
"""sysexits.h: a port to listen on is in use or not on this machine. systemd restarts on it
(whatever held the port may let go)."""

log = logging.getLogger("evcp")


def _load(path: str):
    from evcp.config import ConfigError, load

    try:
        return load(Path(path))
    except ConfigError as error:
        print(f"evcp: {error}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None


async def _run_until_signalled(main_coro, before_exit=None, first=None) -> None:
    """Run until SIGTERM/SIGINT; then ``first(why)`` at once (the contactors), ``before_exit()``
    (the transaction policy) within its budget, then cancel. The whole stop is bounded: after
    CLEANUP_BUDGET_S this returns even if the charger has not finished, and at STOP_BUDGET_S
    after the signal the process ends (evcp.runtime.app)."""
    from evcp.runtime.app import CLEANUP_BUDGET_S, STOP_BUDGET_S, arm_stop_deadline

    task = asyncio.ensure_future(main_coro)
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    task.add_done_callback(lambda _: finished.done() or finished.set_result(None))
    stopping = False

    def stop(signame: str) -> None:
        nonlocal stopping
        if stopping:
            log.warning("%s again: already stopping", signame)
            return
        stopping = True
        log.warning("%s received: stopping within %.0f s", signame, STOP_BUDGET_S)
        open_relays = first or (lambda why: None)
        open_relays(signame)
        arm_stop_deadline(STOP_BUDGET_S, lambda: open_relays(f"{signame}, stop overran"))

        async def graceful():
            try:
                if before_exit is not None:
                    await before_exit()
            finally:
                task.cancel()
                await asyncio.wait([task], timeout=CLEANUP_BUDGET_S)
                if not finished.done():
                    log.error("the charger did not finish stopping within %.0f s of the cancel; exiting",
                              CLEANUP_BUDGET_S)
                    finished.set_result(None)
        loop.create_task(graceful())

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signal.Signals(signum).name)
    await finished
    if task.done() and not task.cancelled():
        task.result()


def _exit_soon(status: int, grace_s: float = 5.0) -> None:
    """The charger has stopped (contactors open, state closed); if a stray library thread keeps
    the interpreter from exiting, end the process anyway so systemd need not kill it."""
    def force() -> None:
        logging.getLogger("evcp").warning("exit took longer than %.0f s; ending the process", grace_s)
        logging.shutdown()
        os._exit(status)

    timer = threading.Timer(grace_s, force)
    timer.daemon = True
    timer.start()


def _setup_problems(config) -> bool:
    """Log what still looks like the unedited example; True when the charger cannot run with it."""
    from evcp.config import setup_problems

    refuse = False
    for problem in setup_problems(config):
        if problem.refuses_to_run:
            log.critical("%s", problem)
            refuse = True
        else:
            log.warning("%s", problem)
    return refuse


def cmd_run(args) -> int:
    config = _load(args.config)
    configure_logging(config.logging.level)
    if _setup_problems(config):
        return EX_CONFIG
    from evcp.api.http import ListenError
    from evcp.runtime.app import Charger
    from evcp.storage import StoreError

    charger = Charger(config)
    try:
        asyncio.run(_run_until_signalled(charger.run(), charger.shutdown, charger.open_contactors))
    except StoreError as error:
        log.critical("%s", error)
        return EX_IOERR
    except ListenError as error:
        log.critical("%s", error)
        return EX_UNAVAILABLE
    if charger.start_new_program:
        # The installed firmware replaced the program; the same process (and systemd unit) runs it.
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, "-m", "evcp", *sys.argv[1:]])
    _exit_soon(0)
    return 0


def cmd_bench(args) -> int:
    config = _load(args.config or str(bench_config_path()))
    if config.hardware.backend != "mock":
        print(f"evcp: {config.source}: hardware.backend: the bench needs \"mock\" (got \"{config.hardware.backend}\")",
              file=sys.stderr)
        return EX_CONFIG
    state_dir = Path(args.state_dir).resolve() if args.state_dir else Path.cwd() / ".bench-state"
    from evcp.config import ConfigError

    try:
        config = bench_config(state_dir, csms_url=args.csms, config=config, version=args.ocpp)
    except ConfigError as error:
        print(f"evcp: {error} (evcp bench --ocpp {args.ocpp})", file=sys.stderr)
        return EX_CONFIG
    if args.listen is not None:
        host, port = args.listen
        config = replace(config, api=replace(config.api, host=host, port=port, listen=f"{host}:{port}"))
    configure_logging(config.logging.level)
    from evcp.api.http import ListenError
    from evcp.storage import StoreError

    csms_listen = args.csms_listen or _listen_address(config.bench.csms_listen)
    control = args.control or (csms_listen[0], csms_listen[1] + 1 if csms_listen[1] else 0)
    bench = Bench(config, csms_listen=None if args.csms else csms_listen, control=control)
    try:
        asyncio.run(_run_until_signalled(bench.run(), bench.shutdown, bench.open_contactors))
    except StoreError as error:
        log.critical("%s", error)
        return EX_IOERR
    except ListenError as error:
        log.critical("%s", error)
        return EX_UNAVAILABLE
    return 0


class Bench:
    """The bench: the built-in central system (unless another is given), then the charger on
    simulated hardware. A stop (Ctrl-C, SIGTERM) is the charger's: contactors open, transactions
    stopped with reason Reboot and delivered, as ``evcp run`` does; then the central system stops."""

    def __init__(self, config, csms_listen: tuple[str, int] | None, control: tuple[str, int]):
        self.config = config
        self.csms_listen, self.control = csms_listen, control
        self.csms = None
        self.charger = None

    async def run(self) -> None:
        from evcp.bench.csms import CentralSystem, Policy
        from evcp.runtime.app import Charger

        config = self.config
        try:
            if self.csms_listen is not None:
                policy = Policy()
                if not config.bench.accept_all_tags:
                    policy.accept_all, policy.tags = False, set(config.bench.id_tags)
                self.csms = CentralSystem(host=self.csms_listen[0], port=self.csms_listen[1],
                                          control_host=self.control[0], control_port=self.control[1], policy=policy)
                await self.csms.start()
                config = replace(config, ocpp=replace(config.ocpp, csms_url=f"{self.csms.url}/ocpp"))
            self.charger = charger = Charger(config)
            task = asyncio.create_task(charger.run())
            try:
                await asyncio.wait([task, asyncio.create_task(charger.started.wait())],
                                   return_when=asyncio.FIRST_COMPLETED)
                if charger.api_server is not None and not task.done():
                    print(f"\n  evcp bench: status page {charger.api_server.url}/", file=sys.stderr)
                    if self.csms is not None:
                        print(f"  central system {self.csms.url} (control API {self.csms.control_url})",
                              file=sys.stderr)
                    print("  Ctrl-C stops it.\n", file=sys.stderr, flush=True)
                await task
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        finally:
            if self.csms is not None:
                await self.csms.stop()

    def open_contactors(self, why: str) -> None:
        if self.charger is not None:
            self.charger.open_contactors(why)

    async def shutdown(self) -> None:
        if self.charger is not None:
            await self.charger.shutdown()


def _listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _address_argument(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. 127.0.0.1:8080 (got {text!r})")
    return host.strip("[]"), int(port)


def cmd_config_check(args) -> int:
    config = _load(args.file)
    from evcp.config import setup_problems
    from evcp.runtime.controller import station_configuration

    try:
        station_configuration(config)
    except ValueError as error:
        print(f"evcp: {config.source}: ocpp.keys: {error}", file=sys.stderr)
        return EX_CONFIG
    problems = setup_problems(config)
    for problem in problems:
        print(f"evcp: {problem}" if problem.refuses_to_run else f"evcp: warning: {problem}", file=sys.stderr)
    if any(problem.refuses_to_run for problem in problems):
        return EX_CONFIG
    warned = f", {len(problems)} warning(s)" if problems else ""
    print(f"{config.source}: ok{warned} ({config.charge_point.connectors} connector(s), "
          f"hardware {config.hardware.backend}, central system {config.ocpp.csms_url})")
    return 0


def cmd_config_show(args) -> int:
    from evcp.config import render

    print(render(_load(args.file)), end="")
    return 0


def cmd_check_hardware(args) -> int:
    config = _load(args.config)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s", force=True)
    from evcp.selftest import check_hardware

    only = {name.strip() for name in args.only.split(",") if name.strip()} if args.only else None
    try:
        return asyncio.run(check_hardware(config, yes=args.yes, only=only))
    except ValueError as error:
        print(f"evcp check-hardware: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def cmd_relays_off(args) -> int:
    """After the charger ended, however it ended (systemd's ExecStopPost=+, as root): the relay
    pins to their off level. The process then ends without gpiozero's exit hook, which would turn
    the pins into floating inputs; the kernel keeps the level driven."""
    from evcp.runtime.systemd import force_safe_outputs

    status, _held = force_safe_outputs(Path(args.config), report=lambda line: print(line, flush=True))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def cmd_csms(args) -> int:
    from evcp.bench import csms

    csms.check_arguments(args.parser, args)
    return csms.run_command(args)


def parser() -> argparse.ArgumentParser:
    from evcp import __version__

    p = argparse.ArgumentParser(prog="evcp", description="EV charge-point controller (OCPP 1.6J and 2.0.1) for Raspberry Pi",
                                epilog=f"Exit status: 0 stopped cleanly, 2 bad command line, {EX_CONFIG} bad "
                                       f"configuration, {EX_IOERR} state database unusable, {EX_UNAVAILABLE} "
                                       "an address to listen on is in use or not on this machine.")
    p.add_argument("--version", action="version", version=f"evcp {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the charger (production entry point)")
    run.add_argument("--config", "-c", default="/etc/evcp/evcp.toml", help="installer config (TOML)")
    run.set_defaults(func=cmd_run, parser=run)

    bench = sub.add_parser("bench", help="simulated charger + local central system + status page")
    bench.add_argument("--csms", metavar="URL", help="use this central system instead of the built-in one")
    bench.add_argument("--config", "-c", help="bench config (default: the packaged bench.toml)")
    bench.add_argument("--state-dir", help="where state and the OCPP trace go (default ./.bench-state)")
    bench.add_argument("--listen", type=_address_argument, metavar="HOST:PORT",
                       help="status page and HTTP API (default: api.listen, 127.0.0.1:8080; port 0: any)")
    bench.add_argument("--csms-listen", type=_address_argument, metavar="HOST:PORT",
                       help="the built-in central system (default: bench.csms_listen, 127.0.0.1:9000; port 0: any)")
    bench.add_argument("--control", type=_address_argument, metavar="HOST:PORT",
                       help="the built-in central system's control API (default: the port after --csms-listen)")
    bench.add_argument("--ocpp", choices=("1.6", "2.0.1", "auto"),
                       help="the OCPP version the charger speaks (sets ocpp.version; [ocpp.keys] carry over "
                            "to their 2.0.1 equivalents in [ocpp.variables] and back; the built-in central "
                            "system speaks both)")
    bench.set_defaults(func=cmd_bench, parser=bench)

    config = sub.add_parser("config", help="check or show an installer config")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate FILE; exit 78 on error")
    check.add_argument("file")
    check.set_defaults(func=cmd_config_check, parser=check)
    show = config_sub.add_parser("show", help="effective values of FILE, secrets masked")
    show.add_argument("file")
    show.set_defaults(func=cmd_config_show, parser=show)

    check_hw = sub.add_parser("check-hardware", help="test relay, pilot, PP, lock, reader, meter and power-fail input; exit 0 passed, "
                                   "1 failed, 2 not verified")
    check_hw.add_argument("--config", "-c", default="/etc/evcp/evcp.toml", help="installer config (TOML)")
    check_hw.add_argument("--yes", "-y", action="store_true", help="switch the contactors without asking")
    check_hw.add_argument("--only", metavar="LIST", help="comma-separated subset of relay,pilot,pp,lock,reader,meter,power")
    check_hw.set_defaults(func=cmd_check_hardware, parser=check_hw)

    relays_off = sub.add_parser("relays-off", help="drive every configured relay pin to its off level and the pilot "
                                "PWM to +12 V, without starting the charger (the unit's ExecStopPost; needs GPIO access)")
    relays_off.add_argument("--config", "-c", default="/etc/evcp/evcp.toml", help="installer config (TOML); "
                            "an invalid one is read leniently, a missing one means the default wiring")
    relays_off.set_defaults(func=cmd_relays_off, parser=relays_off)

    from evcp.bench.csms import add_arguments

    csms = sub.add_parser("csms", help="the bench's OCPP 1.6J and 2.0.1 central system on its own",
                          description="OCPP 1.6J and 2.0.1 central system for the bench and integration tests "
                                      "(also python -m evcp.bench.csms).")
    add_arguments(csms)
    csms.set_defaults(func=cmd_csms, parser=csms)
    return p


def main(argv: list[str] | None = None) -> int:
    args, unknown = parser().parse_known_args(argv)
    if unknown:  # argparse would answer with the usage of `evcp`, not of the command given
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
