"""The bench: simulated hardware, a local central system, and the config that ties them."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

from evcp.config import Config, load, with_version


def bench_config_path() -> Path:
    """The bench config shipped inside the package (works from a wheel as from a checkout)."""
    return Path(str(resources.files("evcp.bench").joinpath("bench.toml")))


def bench_config(state_dir: Path, *, csms_url: str | None = None, api_port: int | None = None,
                 config: Config | None = None, version: str | None = None) -> Config:
    """``config`` (default: the packaged bench config) with what a bench run chooses itself:
    where state goes, which central system, which API port (0: any free one), which OCPP version
    (``evcp.config.with_version``: the config's [ocpp.keys] carry over to their 2.0.1 equivalents
    and back, so the bench keeps its cadence in either protocol; ConfigError for one without)."""
    config = config or load(bench_config_path())
    if version is not None:
        config = with_version(config, version)
    config = replace(config, storage=replace(config.storage, state_dir=state_dir))
    if csms_url is not None:
        config = replace(config, ocpp=replace(config.ocpp, csms_url=csms_url))
    if api_port is not None:
        api = config.api
        config = replace(config, api=replace(api, listen=f"{api.host}:{api_port}", port=api_port))
    return config
