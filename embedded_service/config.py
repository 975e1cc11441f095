"""Server settings from CLI flags, then `SLOTDECK_*` environment, then a TOML file.

`MAX_CONCURRENT_REQUESTS` / `MAX_CONCURRENT_JOBS` (the names existing
deployments already use) set the limit of the `default` queue.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from .localmode import data_dir
from .model import DeviceSpec


class ConfigError(ValueError):
    """Settings that cannot be used, said in one line."""


class Settings(BaseModel):
    """Everything `slotdeck serve` needs; every field can come from a flag, the environment or the file."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    store: str | None = Field(default=None, description="Store URL; default sqlite:///<data_dir>/slotdeck.db")
    job_store: str | None = Field(
        default=None,
        description="Redis mode: the store (sqlite:///path) this server owns and runs durable jobs from, each "
        "under a global slot (tokens and audit are in Redis). Default: none (jobs off).",
    )
    cluster_lease_ttl_s: float | None = Field(
        default=None,
        ge=1,
        le=3600,
        description="Redis mode: how long after a server stops renewing (killed) its slots come back (default 30).",
    )
    data_dir: Path | None = None
    default_limit: int | None = Field(default=None, ge=0, description="Limit of the `default` queue.")
    auth: bool = Field(default=True, description="False serves without tokens (loopback only).")
    local_token: bool = Field(default=True, description="On loopback, write a local admin token for the CLI.")
    log_level: str = "INFO"
    log_json: bool = False
    access_log: bool = False
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    grace_s: float = Field(default=30.0, ge=0, description="Shutdown grace for running work.")
    snapshot_hz: float = Field(default=2.0, gt=0, le=50, description="SSE snapshot rate.")
    max_poll_s: float = Field(default=30.0, gt=0, le=30, description="Longest acquire long-poll.")
    probes: bool = True
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, le=1 << 30, description="Request bodies above this get 413 unread."
    )
    command_allowlist: Path | None = Field(
        default=None, description="TOML file of the commands a client token may submit (default: none)."
    )
    job_env_pass: str = Field(
        default="",
        max_length=4096,
        description="Comma-separated names (globs) of the service's environment variables command jobs also get; "
        "'*' passes the whole environment. Always passed: PATH, HOME, LANG, LC_*, CUDA_*, NVIDIA_*, ...",
    )
    gpus: str | None = Field(
        default=None,
        description="GPUs this server may hand out, as CUDA_VISIBLE_DEVICES reads them (indices or UUIDs); "
        "default: the server's CUDA_VISIBLE_DEVICES, else all.",
    )
    devices: list[DeviceSpec] = Field(
        default_factory=list, description="Declared GPUs, for hosts without a working NVML (NVML figures win)."
    )
    gpu_memory_budget_mib: int | None = Field(
        default=None, ge=0, description="What a GPU of unknown size (unified memory) may promise to leases."
    )
    gpu_stale_after_s: float = Field(
        default=10.0, ge=0, le=3600, description="How long the last good GPU figures stand for a failed reading."
    )

    advertise_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Redis mode: the URL other instances and clients reach this server's API at, shown in the "
        "snapshot's `instances` (default: the bound address, the hostname for 0.0.0.0 or ::).",
    )

    @field_validator("advertise_url")
    @classmethod
    def _server_url(cls, url: str | None) -> str | None:
        if url is not None:
            check_advertise_url(url)
        return url

    @field_validator("devices")
    @classmethod
    def _one_declaration_per_gpu(cls, devices: list[DeviceSpec]) -> list[DeviceSpec]:
        seen: set[int] = set()
        for device in devices:
            if device.index in seen:  # the last one winning silently would promise a size the card may not have
                raise PydanticCustomError("device_twice", "GPU {index} is declared more than once", {"index": device.index})
            seen.add(device.index)
        return devices

    def gpu_service_kwargs(self) -> dict[str, Any]:
        """The SlotService arguments these settings give for GPUs."""
        return {
            "devices": list(self.devices),
            "visible_gpus": self.gpus,
            "gpu_memory_budget_mib": self.gpu_memory_budget_mib,
            "gpu_stale_after_s": self.gpu_stale_after_s,
        }

    def resolved_data_dir(self) -> Path:
        return self.data_dir or data_dir()

    def resolved_store(self) -> str:
        return self.store or f"sqlite:///{self.resolved_data_dir() / 'slotdeck.db'}"


# host[:port]: a name or IPv4 address, or a bracketed IPv6 one; nothing a browser and urllib would read apart
_URL_HOST = re.compile(r"^([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]+)?$")


def check_advertise_url(url: str) -> None:
    """An advertised API URL is http(s)://host[:port][/path], without credentials, query or fragment."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
        parts = urlsplit("")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not port_ok
        or parts.username is not None
        or parts.query
        or parts.fragment
        or any(c.isspace() or not c.isprintable() for c in url)
        or not _URL_HOST.match(parts.netloc)
    ):
        raise PydanticCustomError(
            "advertise_url", "must be http(s)://host[:port][/path] without credentials, query or spaces"
        )


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off", ""}


def _env_value(name: str, raw: str) -> Any:
    """Turn an environment string into what the field expects (pydantic does the rest)."""
    annotation = Settings.model_fields[name].annotation
    if name == "devices":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"SLOTDECK_DEVICES must be a JSON list of devices: {exc}") from None
    if annotation is bool:
        lowered = raw.strip().lower()
        if lowered in _BOOL_TRUE:
            return True
        if lowered in _BOOL_FALSE:
            return False
        raise ConfigError(f"SLOTDECK_{name.upper()}={raw!r} is not a yes/no value")
    return raw


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for legacy in ("MAX_CONCURRENT_JOBS", "MAX_CONCURRENT_REQUESTS"):  # the later one wins
        if env.get(legacy):
            values["default_limit"] = env[legacy]
    for name in Settings.model_fields:
        raw = env.get(f"SLOTDECK_{name.upper()}")
        if raw is not None:
            values[name] = _env_value(name, raw)
    return values


def from_file(path: Path) -> dict[str, Any]:
    """Read a TOML file; its keys are the settings' names (a `[server]` table is accepted too)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    section = data.get("server", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [server] must be a table")
    return dict(section)


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge the three sources (flags > environment > file); unset flags are None and do not count."""
    env = os.environ if env is None else env
    path = config_file or (Path(env["SLOTDECK_CONFIG"]) if env.get("SLOTDECK_CONFIG") else None)
    merged: dict[str, Any] = {}
    if path is not None:
        merged.update(from_file(path))
    merged.update(from_env(env))
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None


def parse_device(text: str) -> DeviceSpec:
    """`--device INDEX[:MEMORY_MIB[:NAME]]`, e.g. `0:40960:A100`; ConfigError says what is wrong."""
    index, _, rest = text.partition(":")
    memory, _, name = rest.partition(":")
    try:
        return DeviceSpec(index=int(index), memory_total_mib=int(memory) if memory else 0, name=name or "GPU")
    except ValueError:
        raise ConfigError(f"--device takes INDEX[:MEMORY_MIB[:NAME]] (e.g. 0:40960:A100), not {text!r}") from None
