"""``evcp``: run the charger, run the bench, check a configuration."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from evcp.bench import bench_config, bench_config_path

EX_CONFIG = 78
"""sysexits.h: configuration error. The systemd unit does not restart on it."""
EX_IOERR = 74
"""sysexits.h: the state database cannot be used. Nor on this: it needs a person."""

log = logging.getLogger("evcp")


def configure_logging(level: str = "INFO", timestamps: bool = False) -> None:
    """Plain lines on stderr; under systemd, journald priority prefixes and no timestamps."""
    from evcp.runtime.systemd import JournalFormatter, under_journald

    handler = logging.StreamHandler(sys.stderr)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        fmt = "%(levelname)s %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(("%(asctime)s " if timestamps else "") + fmt))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler], force=True)
    for noisy in ("ocpp", "websockets", "pymodbus", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load(path: str):
    from evcp.config import ConfigError, load

    try:
        return load(Path(path))
    except ConfigError as error:
        print(f"evcp: {error}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None


async def _run_until_signalled(main_coro, before_exit=None) -> None:
    """Run until SIGTERM/SIGINT; then ``before_exit()`` (the transaction policy), then cancel."""
    task = asyncio.ensure_future(main_coro)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        async def graceful():
            try:
                if before_exit is not None:
                    await before_exit()
            finally:
                task.cancel()
        loop.create_task(graceful())

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    try:
        await task
    except asyncio.CancelledError:
        pass


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


def cmd_run(args) -> int:
    config = _load(args.config)
    configure_logging(config.logging.level)
    from evcp.runtime.app import Charger
    from evcp.storage import StoreError

    charger = Charger(config)
    try:
        asyncio.run(_run_until_signalled(charger.run(), charger.shutdown))
    except StoreError as error:
        log.critical("%s", error)
        return EX_IOERR
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
    config = bench_config(state_dir, csms_url=args.csms, config=config)
    configure_logging(config.logging.level, timestamps=True)
    from evcp.storage import StoreError

    try:
        asyncio.run(_run_until_signalled(_bench(config, own_csms=not args.csms)))
    except StoreError as error:
        log.critical("%s", error)
        return EX_IOERR
    return 0


async def _bench(config, own_csms: bool) -> None:
    from evcp.bench.csms import CentralSystem, Policy
    from evcp.runtime.app import Charger

    csms = None
    if own_csms:
        host, _, port = config.bench.csms_listen.rpartition(":")
        policy = Policy()
        if not config.bench.accept_all_tags:
            policy.accept_all, policy.tags = False, set(config.bench.id_tags)
        csms = CentralSystem(host=host.strip("[]"), port=int(port), control_host=host.strip("[]"),
                             control_port=int(port) + 1, policy=policy)
        await csms.start()
    charger = Charger(config)
    task = asyncio.create_task(charger.run())
    try:
        await asyncio.wait([task, asyncio.create_task(charger.started.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        if charger.api_server is not None:
            print(f"\n  evcp bench: status page {charger.api_server.url}/", file=sys.stderr)
            if csms is not None:
                print(f"  central system {csms.url} (control API {csms.control_url})", file=sys.stderr)
            print("  Ctrl-C stops it.\n", file=sys.stderr, flush=True)
        await task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if csms is not None:
            await csms.stop()


def cmd_config_check(args) -> int:
    config = _load(args.file)
    from evcp.runtime.controller import station_configuration

    try:
        station_configuration(config)
    except ValueError as error:
        print(f"evcp: {config.source}: ocpp.keys: {error}", file=sys.stderr)
        return EX_CONFIG
    print(f"{config.source}: ok ({config.charge_point.connectors} connector(s), "
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


def cmd_csms(args) -> int:
    from evcp.bench import csms

    return csms.main(args.rest)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evcp", description="EV charge-point controller (OCPP 1.6J) for Raspberry Pi")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the charger (production entry point)")
    run.add_argument("--config", "-c", default="/etc/evcp/evcp.toml", help="installer config (TOML)")
    run.set_defaults(func=cmd_run)

    bench = sub.add_parser("bench", help="simulated charger + local central system + status page")
    bench.add_argument("--csms", metavar="URL", help="use this central system instead of the built-in one")
    bench.add_argument("--config", "-c", help="bench config (default: the packaged bench.toml)")
    bench.add_argument("--state-dir", help="where state and the OCPP trace go (default ./.bench-state)")
    bench.set_defaults(func=cmd_bench)

    config = sub.add_parser("config", help="check or show an installer config")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate FILE; exit 78 on error")
    check.add_argument("file")
    check.set_defaults(func=cmd_config_check)
    show = config_sub.add_parser("show", help="effective values of FILE, secrets masked")
    show.add_argument("file")
    show.set_defaults(func=cmd_config_show)

    check_hw = sub.add_parser("check-hardware", help="test relay, pilot, reader, meter and power-fail input")
    check_hw.add_argument("--config", "-c", default="/etc/evcp/evcp.toml", help="installer config (TOML)")
    check_hw.add_argument("--yes", "-y", action="store_true", help="switch the contactors without asking")
    check_hw.add_argument("--only", metavar="LIST", help="comma-separated subset of relay,pilot,reader,meter,power")
    check_hw.set_defaults(func=cmd_check_hardware)

    csms = sub.add_parser("csms", help="the bench's OCPP 1.6J central system on its own", add_help=False)
    csms.add_argument("rest", nargs=argparse.REMAINDER)
    csms.set_defaults(func=cmd_csms)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
