"""Configuration: one TOML file, every key overridable by the environment.

``GB28181_<SECTION>_<KEY>`` overrides ``[section] key`` (for example
``GB28181_SIP_PORT=5070``). Values are validated when loaded; every problem
is reported as a :class:`ConfigError` that names the key, so an operator sees
``sip.id: must be 20 digits, got '3402'`` rather than a traceback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ids import IdError, IdRange, parse_ranges

__all__ = [
    "AuthzConfig",
    "Config",
    "ConfigError",
    "DevicesConfig",
    "FaultsConfig",
    "HttpConfig",
    "IdsConfig",
    "MediaConfig",
    "SipConfig",
    "StorageConfig",
    "UpstreamConfig",
    "detect_host_address",
    "load_config",
]

ENV_PREFIX = "GB28181_"


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True, slots=True)
class SipConfig:
    """``[sip]``: identity of the platform and its SIP listeners."""

    #: 20-digit platform ID (centre code, industry, type 200, network, serial).
    id: str = "34020000002000000001"
    #: 10-digit SIP domain, also the digest realm; defaults to the ID's first 10 digits.
    domain: str = ""
    #: Default device password, used when a device has no password of its own.
    password: str = ""
    #: Address the UDP and TCP listeners bind to.
    listen: str = "0.0.0.0"
    #: UDP and TCP port.
    port: int = 5060
    #: Address put in Via/Contact/SDP; empty = the listen address, or detected.
    advertised_host: str = ""
    #: Seconds between device keepalives (GB/T 28181 default 60).
    keepalive_interval: float = 60.0
    #: Missed keepalive intervals before a device is declared offline.
    keepalive_misses: int = 3
    #: Refuse REGISTERs whose IDs are not 20 digits (WVP's ``deviceIdStrict``).
    strict_ids: bool = True
    #: Shortest and longest registration the registrar grants, in seconds.
    min_expires: int = 60
    max_expires: int = 86400
    #: Failed authentications before a device ID is locked out, and for how long.
    lockout_failures: int = 5
    lockout_seconds: float = 300.0
    #: Put a GB/T 28181 ``Date`` header (device time sync) in REGISTER 200 OK.
    date_header: bool = True
    #: Reject SIP messages larger than this (bytes).
    max_message_size: int = 65536
    #: SIP over TLS port; 0 disables TLS.
    tls_port: int = 0
    tls_cert: str = ""
    tls_key: str = ""
    #: CA bundle for verifying client certificates; empty = no client certificates.
    tls_client_ca: str = ""
    #: Value of the Server / User-Agent header.
    user_agent: str = "gb28181-platform"


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """``[http]``: the HTTP API, health and metrics endpoints."""

    listen: str = "127.0.0.1"
    port: int = 8080
    #: HTTPS: server certificate and key (PEM); empty = plain HTTP (bearer tokens only).
    tls_cert: str = ""
    tls_key: str = ""
    #: CA bundle for client certificates (mutual TLS); callers may then authenticate with
    #: a permission certificate instead of a bearer token. Needs tls_cert.
    tls_client_ca: str = ""


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """``[storage]``: where devices, registrations and history are kept."""

    #: ``sqlite:///relative/path.db``, ``sqlite:////abs/path.db`` or ``postgresql://...``.
    url: str = "sqlite:///./var/gb28181.db"
    #: Seconds between write-behind flushes of hot state.
    flush_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class DevicesConfig:
    """``[devices]``: device management over MANSCDP (catalog, queries, controls)."""

    #: Seconds a query (DeviceInfo, RecordInfo...) waits for the device's Response.
    query_timeout: float = 10.0
    #: Seconds a Catalog query may take; what arrived by then is kept, marked partial.
    catalog_timeout: float = 60.0
    #: Query the Catalog when a device registers (first time or after being offline).
    catalog_on_register: bool = True
    #: Seconds between periodic full Catalog queries per online device; 0 disables.
    catalog_refresh_interval: float = 0.0
    #: Catalog queries in flight at once.
    catalog_concurrency: int = 64
    #: SUBSCRIBE to Catalog changes after the first full query (GB/T 28181-2016 §9.11).
    catalog_subscribe: bool = True
    #: Lifetime asked for in our SUBSCRIBEs, in seconds (refreshed before it runs out).
    subscribe_expires: int = 3600
    #: Seconds between full Catalog queries of devices that refuse the subscription; 0 = never.
    catalog_poll_interval: float = 600.0
    #: SUBSCRIBE to alarms (``Event: presence``, priorities 1-4, all methods) after the first
    #: Catalog sync (on registration when ``catalog_on_register`` is off).
    alarm_subscribe: bool = True
    #: Seconds between MobilePosition reports asked for in a subscription; 0 = no subscription.
    position_interval: int = 0
    #: Seconds an INVITE to a lower platform's channel (ID type 200) may take: it invites its
    #: own device before it answers (notes §9); other devices use ``media.invite_timeout``.
    platform_invite_timeout: float = 30.0
    #: Seconds a lower platform's Catalog answer may take (ID type 200; tens of thousands of
    #: items, one MESSAGE per 200 OK); other devices use ``catalog_timeout``.
    platform_catalog_timeout: float = 300.0
    #: Catalog items per MESSAGE/NOTIFY when another platform queries or subscribes to our
    #: catalog: over UDP, and over TCP/TLS; a body never exceeds ``catalog_answer_max_bytes``.
    catalog_answer_items: int = 10
    catalog_answer_items_tcp: int = 50
    catalog_answer_max_bytes: int = 8000


@dataclass(frozen=True, slots=True)
class FaultsConfig:
    """``[faults]``: fault events (regulation art. 10)."""

    #: POST every fault as JSON to this URL; empty disables.
    webhook_url: str = ""
    #: Events waiting for the webhook at most (more are dropped and logged).
    webhook_queue: int = 1000
    #: Seconds one POST may take.
    webhook_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class IdsConfig:
    """``[ids]``: central ID allocation (regulation art. 11).

    Ranges are TOML tables, ``[[ids.ranges]]`` with ``department``, ``prefix`` (10 digits:
    centre code + industry), ``types`` (list of 3-digit type codes), ``network`` (1 digit),
    ``serial_start`` and ``serial_end`` (0-999999); see :mod:`gb28181.ids`. They have no
    environment override.
    """

    #: Answer REGISTERs from IDs the platform never issued with 403 "ID Not Issued".
    refuse_unissued: bool = False
    #: The ranges each department may be issued from.
    ranges: tuple[IdRange, ...] = ()


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """``[media]``: live play through the in-process media worker (notes §6)."""

    #: Run the media worker and the play API.
    enabled: bool = True
    #: Address the RTP receivers bind to.
    listen: str = "0.0.0.0"
    #: Address devices send media to (``c=`` of our offers); default: ``sip.advertised_host``.
    advertised_host: str = ""
    #: Receive ports (each live stream takes one).
    port_first: int = 30000
    port_last: int = 30999
    #: How devices send media unless listed in ``device_modes``: UDP, TCP-PASSIVE, TCP-ACTIVE.
    stream_mode: str = "UDP"
    #: Per-device stream modes, ``<device id>=<mode>`` separated by commas.
    device_modes: str = ""
    #: Seconds without media before a stream is ended (also: none after the 200 OK).
    no_media_timeout: float = 15.0
    #: Seconds to wait for the final answer to an INVITE.
    invite_timeout: float = 15.0
    #: Seconds between the last consumer leaving and the BYE.
    idle_delay: float = 10.0
    #: Linux UDP GRO on receive and GSO on send (batches: the relay's per-packet cost); off
    #: forces the packet-by-packet fallback (used anyway where the kernel lacks them).
    gro: bool = True
    gso: bool = True

    def mode_of(self, device_id: str) -> str:
        """The stream mode for ``device_id``."""
        for item in self.device_modes.split(","):
            key, _, value = item.partition("=")
            if key.strip() == device_id and value.strip():
                return value.strip().upper()
        return self.stream_mode.upper()


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    """``[recording]``: per-channel recording to segment files (:mod:`gb28181.recordings`).

    Lists are strings so that every key has an environment override: ``always`` is channel
    IDs separated by commas; ``schedules`` is ``<channel>=HH:MM-HH:MM[;HH:MM-HH:MM]`` entries
    separated by commas (civil time ``utc_offset`` seconds east of UTC; a window may cross
    midnight); ``retention_by_class`` is ``<security class>=<days>`` entries.
    """

    #: Run the recorder (needs ``[media] enabled``).
    enabled: bool = True
    #: Directory of the segment files (``<channel>/<YYYYMMDD>/<channel>_<start_ms>.ps``).
    root: str = "./var/recordings"
    #: A segment ends at the first keyframe after this many seconds.
    segment_seconds: float = 60.0
    #: Recorded bytes reach the OS at least this often (seconds): a crash loses no more.
    flush_interval: float = 1.0
    #: Days a segment is kept, unless its channel's security class is in retention_by_class.
    retention_days: float = 30.0
    retention_by_class: str = ""
    #: Bytes all segments may take; the oldest are deleted past it (0 = no quota).
    quota_bytes: int = 0
    #: Channels recorded all the time.
    always: str = ""
    #: Channels recorded during time windows.
    schedules: str = ""
    utc_offset: int = 8 * 3600
    #: Seconds between retention/quota sweeps and policy checks.
    check_interval: float = 30.0

    def always_channels(self) -> tuple[str, ...]:
        """The channel IDs in ``always``."""
        return tuple(filter(None, (c.strip() for c in self.always.split(","))))

    def retention_classes(self) -> dict[int, float]:
        """``{security class: days}`` from ``retention_by_class``.

        :raises ValueError: an entry that is not ``<int>=<number>``.
        """
        out: dict[int, float] = {}
        for item in filter(None, (i.strip() for i in self.retention_by_class.split(","))):
            key, _, value = item.partition("=")
            out[int(key)] = float(value)
        return out

    def schedule_windows(self) -> dict[str, tuple[tuple[int, int], ...]]:
        """``{channel: ((start minute, end minute), ...)}`` from ``schedules``.

        :raises ValueError: a malformed entry or time.
        """

        def minute(text: str) -> int:
            hours, _, minutes = text.strip().partition(":")
            value = int(hours) * 60 + int(minutes or "0")
            if not 0 <= value <= 24 * 60:
                raise ValueError(f"time out of range: {text!r}")
            return value

        out: dict[str, tuple[tuple[int, int], ...]] = {}
        for item in filter(None, (i.strip() for i in self.schedules.split(","))):
            channel, sep, spec = item.partition("=")
            if not sep or not channel.strip():
                raise ValueError(f"expected <channel>=HH:MM-HH:MM, got {item!r}")
            windows = []
            for window in filter(None, (w.strip() for w in spec.split(";"))):
                first, sep, last = window.partition("-")
                if not sep:
                    raise ValueError(f"expected HH:MM-HH:MM, got {window!r}")
                windows.append((minute(first), minute(last)))
            out[channel.strip()] = tuple(windows)
        return out


@dataclass(frozen=True, slots=True)
class CertsConfig:
    """``[certs]``: the platform's certificate authority (``gb28181 certs``)."""

    #: Directory holding the CA certificate, key and issued/revoked index.
    ca_dir: str = "./var/ca"


@dataclass(frozen=True, slots=True)
class AuthzConfig:
    """``[authz]``: the permission levels (regulation.md §4; "our reading" switches)."""

    #: Channels with security_class >= this are specific areas (特定区域).
    specific_area_threshold: int = 3
    #: Civil time for certificate windows, seconds east of UTC (China: 28800).
    utc_offset: int = 8 * 3600
    level1_views_unshared: bool = False
    own_department_overrides_specific_area: bool = True
    level3_control_excludes_specific_areas: bool = True
    level3_extraction: bool = False
    level4_extraction: bool = False
    level4_views_own_department: bool = False
    snapshot_is_extraction: bool = False
    #: Seconds without a command after which a PTZ control session ends.
    control_inactivity: float = 30.0
    #: Longest control period a level-1 holder may set (seconds).
    max_control_period: float = 4 * 3600.0
    #: Longest approval of a grant (seconds).
    max_grant_seconds: float = 30 * 86400.0
    #: Named conditions in force, comma-separated (e.g. "wartime"), for certificate windows.
    flags: str = ""


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """``[audit]``: the hash-chained audit trail (threat model in authz/audit.py)."""

    #: HMAC-SHA-256 key file (>= 32 bytes, mode 0600, kept out of the database);
    #: empty = plain SHA-256 chaining.
    key_file: str = ""
    #: Seconds between background writes of audit records.
    flush_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One ``[[upstream]]`` table: an upper platform we register to (cascade, notes §9).

    An array of tables in the TOML file; it has no environment override.
    """

    #: The upper platform's 20-digit ID (Request-URI user of our REGISTER).
    id: str = ""
    #: Its 10-digit SIP domain (From/To of what we send); empty = the first 10 digits of ``id``.
    domain: str = ""
    #: Its SIP address and port, and the transport: ``udp`` or ``tcp``.
    host: str = ""
    port: int = 5060
    transport: str = "udp"
    #: The digest password it gave us.
    password: str = ""
    #: Our ID toward it; empty = ``sip.id``.
    local_id: str = ""
    #: Registration lifetime asked for (seconds), and seconds between our keepalives.
    expires: int = 3600
    keepalive_interval: float = 60.0
    #: Unanswered keepalives in a row after which we register again.
    keepalive_misses: int = 3
    #: Back-off before registering again after a failure: first delay, doubling up to the max.
    retry_min: float = 5.0
    retry_max: float = 300.0
    #: Seconds a REGISTER may go unanswered before it counts as failed.
    register_timeout: float = 10.0
    #: Channel IDs and/or group/organisation IDs or ID prefixes shared with it (empty = none).
    share: tuple[str, ...] = ()
    #: Optional ID mapping, ours -> published: ``id_map = { "<our id>" = "<published id>" }``.
    id_map: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LogConfig:
    """``[log]``: logging."""

    level: str = "INFO"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration."""

    sip: SipConfig = field(default_factory=SipConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    devices: DevicesConfig = field(default_factory=DevicesConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    ids: IdsConfig = field(default_factory=IdsConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    certs: CertsConfig = field(default_factory=CertsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    authz: AuthzConfig = field(default_factory=AuthzConfig)
    log: LogConfig = field(default_factory=LogConfig)
    upstream: tuple[UpstreamConfig, ...] = ()


def _coerce(key: str, typ: Any, value: Any) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(key, f"must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(key, f"must be an integer, got {value!r}")
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(key, f"must be an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(key, f"must be a number, got {value!r}")
        try:
            return float(str(value).strip())
        except ValueError:
            raise ConfigError(key, f"must be a number, got {value!r}") from None
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    raise ConfigError(key, f"unsupported type {typ!r}")  # pragma: no cover


def _build_section(
    name: str, cls: type[Any], raw: Mapping[str, Any], env: Mapping[str, str]
) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}.{key}", "unknown key")
    values: dict[str, Any] = {}
    if cls is IdsConfig:
        # The only structured value: a list of tables, validated by its own module.
        try:
            values["ranges"] = parse_ranges(raw.get("ranges", []), key=f"{name}.ranges")
        except IdError as exc:
            where, _, message = str(exc).partition(": ")
            raise ConfigError(where, message) from None
    for f in dataclasses.fields(cls):
        if f.name in values:
            continue
        key = f"{name}.{f.name}"
        env_name = f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}"
        if env_name in env:
            values[f.name] = _coerce(env_name, hints[f.name], env[env_name])
        elif f.name in raw:
            values[f.name] = _coerce(key, hints[f.name], raw[f.name])
    return cls(**values)


def _check_port(key: str, port: int, *, allow_zero: bool = False) -> None:
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ConfigError(key, f"must be a port number 1-65535, got {port}")


def detect_host_address() -> str:
    """The local address of the default route, or 127.0.0.1 when there is none.

    A UDP ``connect`` only selects a route; it sends nothing.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed, never sent to
            addr = s.getsockname()[0]
            return str(addr)
    except OSError:
        return "127.0.0.1"


def _validate_sip(sip: SipConfig) -> SipConfig:
    if len(sip.id) != 20 or not sip.id.isdigit():
        raise ConfigError("sip.id", f"must be 20 digits, got {sip.id!r}")
    domain = sip.domain or sip.id[:10]
    if not domain.isdigit() or len(domain) not in (8, 10):
        raise ConfigError("sip.domain", f"must be 10 digits (or 8), got {sip.domain!r}")
    _check_port("sip.port", sip.port, allow_zero=True)  # 0 = any free port (tests)
    _check_port("sip.tls_port", sip.tls_port, allow_zero=True)
    if sip.tls_port and (not sip.tls_cert or not sip.tls_key):
        raise ConfigError("sip.tls_cert", "tls_port is set, so tls_cert and tls_key are required")
    try:
        listen = ipaddress.ip_address(sip.listen)
    except ValueError:
        raise ConfigError("sip.listen", f"must be an IP address, got {sip.listen!r}") from None
    advertised = sip.advertised_host
    if not advertised:
        advertised = detect_host_address() if listen.is_unspecified else sip.listen
    if advertised in ("0.0.0.0", "::", "[::]"):
        raise ConfigError(
            "sip.advertised_host", "must be an address peers can reach, never 0.0.0.0"
        )
    if sip.keepalive_interval <= 0:
        raise ConfigError("sip.keepalive_interval", "must be positive")
    if sip.keepalive_misses < 1:
        raise ConfigError("sip.keepalive_misses", "must be at least 1")
    if not 1 <= sip.min_expires <= sip.max_expires:
        raise ConfigError("sip.min_expires", "must be at least 1 and not above sip.max_expires")
    if sip.lockout_failures < 1:
        raise ConfigError("sip.lockout_failures", "must be at least 1")
    if not 1024 <= sip.max_message_size <= 1024 * 1024:
        raise ConfigError("sip.max_message_size", "must be between 1024 and 1048576 bytes")
    return dataclasses.replace(sip, domain=domain, advertised_host=advertised)


_STREAM_MODES = ("UDP", "TCP-PASSIVE", "TCP-ACTIVE")


def _validate_authz(authz: AuthzConfig, http: HttpConfig) -> None:
    if not 0 <= authz.specific_area_threshold <= 255:
        raise ConfigError("authz.specific_area_threshold", "must be between 0 and 255")
    if not -14 * 3600 <= authz.utc_offset <= 14 * 3600:
        raise ConfigError("authz.utc_offset", "must be within +-14 hours (seconds)")
    for key in ("control_inactivity", "max_control_period", "max_grant_seconds"):
        if not getattr(authz, key) > 0:
            raise ConfigError(f"authz.{key}", "must be positive")
    if bool(http.tls_cert) != bool(http.tls_key):
        raise ConfigError("http.tls_cert", "tls_cert and tls_key go together")
    if http.tls_client_ca and not http.tls_cert:
        raise ConfigError("http.tls_client_ca", "mutual TLS needs tls_cert and tls_key")


def _validate_media(media: MediaConfig) -> None:
    _check_port("media.port_first", media.port_first)
    _check_port("media.port_last", media.port_last)
    if media.port_first > media.port_last:
        raise ConfigError("media.port_first", "must not be above media.port_last")
    if media.stream_mode.upper() not in _STREAM_MODES:
        raise ConfigError(
            "media.stream_mode",
            f"must be UDP, TCP-PASSIVE or TCP-ACTIVE, got {media.stream_mode!r}",
        )
    for item in filter(None, (i.strip() for i in media.device_modes.split(","))):
        key, _, value = item.partition("=")
        if not key.strip() or value.strip().upper() not in _STREAM_MODES:
            raise ConfigError("media.device_modes", f"must be <device id>=<mode>, got {item!r}")
    if media.no_media_timeout <= 0 or media.invite_timeout <= 0 or media.idle_delay < 0:
        raise ConfigError("media.no_media_timeout", "timeouts must be positive, idle_delay >= 0")
    if media.advertised_host in ("0.0.0.0", "::", "[::]"):
        raise ConfigError("media.advertised_host", "must be an address peers can reach")


def _validate_recording(rec: RecordingConfig) -> None:
    if not rec.root:
        raise ConfigError("recording.root", "must not be empty")
    if rec.segment_seconds < 1 or rec.segment_seconds > 3600:
        raise ConfigError("recording.segment_seconds", "must be between 1 and 3600")
    if not 0 < rec.flush_interval <= 10:
        raise ConfigError("recording.flush_interval", "must be positive and at most 10")
    if rec.retention_days <= 0:
        raise ConfigError("recording.retention_days", "must be positive")
    try:
        classes = rec.retention_classes()
    except ValueError:
        raise ConfigError(
            "recording.retention_by_class", "must be <security class>=<days>, comma separated"
        ) from None
    if any(days <= 0 for days in classes.values()):
        raise ConfigError("recording.retention_by_class", "days must be positive")
    if rec.quota_bytes < 0:
        raise ConfigError("recording.quota_bytes", "must be 0 (no quota) or positive")
    try:
        rec.schedule_windows()
    except ValueError as exc:
        raise ConfigError("recording.schedules", str(exc)) from None
    if not -14 * 3600 <= rec.utc_offset <= 14 * 3600:
        raise ConfigError("recording.utc_offset", "must be within +-14 hours (seconds)")
    if rec.check_interval <= 0:
        raise ConfigError("recording.check_interval", "must be positive")


def _build_upstreams(raw: Any) -> tuple[UpstreamConfig, ...]:
    """``[[upstream]]``: each table validated, keys named ``upstream[N].key``."""
    if not isinstance(raw, list):
        raise ConfigError("upstream", "must be an array of tables ([[upstream]])")
    hints = typing.get_type_hints(UpstreamConfig)
    known = {f.name for f in dataclasses.fields(UpstreamConfig)}
    out: list[UpstreamConfig] = []
    for n, table in enumerate(raw):
        where = f"upstream[{n}]"
        if not isinstance(table, dict):
            raise ConfigError(where, "must be a table")
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"{where}.{key}", "unknown key")
            if key == "share":
                if not isinstance(value, list) or not all(
                    isinstance(v, str) and v.isdigit() and 1 <= len(v) <= 20 for v in value
                ):
                    raise ConfigError(f"{where}.share", "must be a list of IDs or ID prefixes")
                values[key] = tuple(value)
            elif key == "id_map":
                if not isinstance(value, dict) or not all(
                    isinstance(k, str)
                    and isinstance(v, str)
                    and len(k) == len(v) == 20
                    and (k + v).isdigit()
                    for k, v in value.items()
                ):
                    raise ConfigError(f"{where}.id_map", "must map 20-digit IDs to 20-digit IDs")
                if len(set(value.values())) != len(value):
                    raise ConfigError(f"{where}.id_map", "two IDs are published as the same ID")
                values[key] = tuple(value.items())
            else:
                values[key] = _coerce(f"{where}.{key}", hints[key], value)
        up = UpstreamConfig(**values)
        if len(up.id) != 20 or not up.id.isdigit():
            raise ConfigError(f"{where}.id", f"must be 20 digits, got {up.id!r}")
        domain = up.domain or up.id[:10]
        if not domain.isdigit() or len(domain) not in (8, 10):
            raise ConfigError(f"{where}.domain", f"must be 10 digits (or 8), got {up.domain!r}")
        if up.local_id and (len(up.local_id) != 20 or not up.local_id.isdigit()):
            raise ConfigError(f"{where}.local_id", f"must be 20 digits, got {up.local_id!r}")
        if not up.host:
            raise ConfigError(f"{where}.host", "is required")
        _check_port(f"{where}.port", up.port)
        if up.transport.lower() not in ("udp", "tcp"):
            raise ConfigError(f"{where}.transport", f"must be udp or tcp, got {up.transport!r}")
        if not 10 <= up.expires <= 86400:
            raise ConfigError(f"{where}.expires", "must be between 10 and 86400 seconds")
        if up.keepalive_interval <= 0:
            raise ConfigError(f"{where}.keepalive_interval", "must be positive")
        if up.keepalive_misses < 1:
            raise ConfigError(f"{where}.keepalive_misses", "must be at least 1")
        if up.register_timeout <= 0:
            raise ConfigError(f"{where}.register_timeout", "must be positive")
        if not 0 < up.retry_min <= up.retry_max:
            raise ConfigError(f"{where}.retry_min", "must be positive and not above retry_max")
        if any(o.id == up.id for o in out):
            raise ConfigError(f"{where}.id", f"upper platform {up.id} is configured twice")
        out.append(up)
    return tuple(out)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the configuration.

    :param path: a TOML file; ``None`` means built-in defaults only.
    :param env: environment for ``GB28181_<SECTION>_<KEY>`` overrides
        (``os.environ`` when ``None``).
    :raises ConfigError: naming the offending key.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    sections: dict[str, type[Any]] = {
        f.name: typing.get_type_hints(Config)[f.name]
        for f in dataclasses.fields(Config)
        if f.name != "upstream"
    }
    for name, value in raw.items():
        if name == "upstream":
            continue  # an array of tables, below
        if name not in sections:
            raise ConfigError(name, "unknown section")
        if not isinstance(value, dict):
            raise ConfigError(name, "must be a table")
    built: dict[str, Any] = {
        name: _build_section(name, cls, raw.get(name, {}), env) for name, cls in sections.items()
    }
    built["upstream"] = _build_upstreams(raw.get("upstream", []))
    cfg = Config(**built)
    sip = _validate_sip(cfg.sip)
    _check_port("http.port", cfg.http.port, allow_zero=True)
    url = cfg.storage.url
    if not (url.startswith("sqlite:") or url.startswith(("postgresql://", "postgres://"))):
        raise ConfigError("storage.url", f"must be sqlite:///... or postgresql://..., got {url!r}")
    if cfg.audit.flush_interval <= 0:
        raise ConfigError("audit.flush_interval", "must be positive")
    if cfg.storage.flush_interval <= 0:
        raise ConfigError("storage.flush_interval", "must be positive")
    dev = cfg.devices
    if dev.query_timeout <= 0 or dev.catalog_timeout <= 0:
        raise ConfigError("devices.query_timeout", "query and catalog timeouts must be positive")
    if dev.catalog_refresh_interval < 0:
        raise ConfigError("devices.catalog_refresh_interval", "must be 0 (off) or positive")
    if dev.catalog_concurrency < 1:
        raise ConfigError("devices.catalog_concurrency", "must be at least 1")
    if not 10 <= dev.subscribe_expires <= 86400:
        raise ConfigError("devices.subscribe_expires", "must be between 10 and 86400 seconds")
    if dev.catalog_poll_interval < 0:
        raise ConfigError("devices.catalog_poll_interval", "must be 0 (off) or positive")
    if not 0 <= dev.position_interval <= 86400:
        raise ConfigError("devices.position_interval", "must be 0 (off) or 1-86400 seconds")
    if dev.platform_invite_timeout <= 0:
        raise ConfigError("devices.platform_invite_timeout", "must be positive")
    if dev.platform_catalog_timeout <= 0:
        raise ConfigError("devices.platform_catalog_timeout", "must be positive")
    if dev.catalog_answer_items < 1 or dev.catalog_answer_items_tcp < 1:
        raise ConfigError("devices.catalog_answer_items", "must be at least 1")
    if dev.catalog_answer_max_bytes < 1024:
        raise ConfigError("devices.catalog_answer_max_bytes", "must be at least 1024")
    hook = cfg.faults.webhook_url
    if hook and not hook.startswith(("http://", "https://")):
        raise ConfigError("faults.webhook_url", f"must be an http(s) URL, got {hook!r}")
    if cfg.faults.webhook_queue < 1 or cfg.faults.webhook_timeout <= 0:
        raise ConfigError("faults.webhook_queue", "queue must be >= 1 and timeout positive")
    _validate_media(cfg.media)
    _validate_recording(cfg.recording)
    _validate_authz(cfg.authz, cfg.http)
    if cfg.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(
            "log.level", f"must be DEBUG, INFO, WARNING or ERROR, got {cfg.log.level!r}"
        )
    return dataclasses.replace(cfg, sip=sip)
