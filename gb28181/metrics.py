"""Prometheus metrics of the signalling server.

Names follow prometheus-client conventions: ``gb28181_`` prefix, base units
(seconds), ``_total`` on counters. Each :class:`Metrics` owns its own
registry so several servers (in tests) do not collide, and label children are
cached because ``Counter.labels()`` is too slow for the per-message path.
Gauges of registered/online devices are read from the registrar at scrape
time, which costs nothing per message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "MAX_STREAM_SERIES", "MediaSample", "Metrics", "StreamSample"]

_REGISTER_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)

# INVITE sent to first media packet: devices answer in tens of ms to several seconds.
_START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0)
# Per-stream series are labelled by channel; a city platform can play thousands at once, so
# the number of labelled series is capped (the totals still count every stream).
MAX_STREAM_SERIES = 500


@dataclass(frozen=True, slots=True)
class StreamSample:
    """The latest sampled state of one live stream."""

    channel: str
    bitrate: float
    consumers: int


@dataclass(slots=True)
class MediaSample:
    """Media counters as last sampled from the worker (totals only ever grow)."""

    sessions: int = 0
    consumers: int = 0
    packets: int = 0
    bytes: int = 0
    forwarded: int = 0
    lost: int = 0
    reordered: int = 0
    duplicates: int = 0
    keyframes: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    streams: list[StreamSample] = field(default_factory=list)


class _MediaCollector:
    """Renders a :class:`MediaSample` at scrape time; nothing is done per packet."""

    def __init__(self, source: Callable[[], MediaSample]) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: names are not known to the registry in advance

    def collect(self) -> Iterator[Metric]:
        s = self.source()
        yield GaugeMetricFamily("gb28181_media_sessions", "Live media sessions", s.sessions)
        yield GaugeMetricFamily(
            "gb28181_media_consumers", "Viewers of live media sessions", s.consumers
        )
        for name, doc, value in (
            ("gb28181_media_packets", "RTP packets received", s.packets),
            ("gb28181_media_bytes", "RTP bytes received", s.bytes),
            ("gb28181_media_packets_forwarded", "RTP packets forwarded to outputs", s.forwarded),
            ("gb28181_media_packets_lost", "RTP packets missing by sequence number", s.lost),
            ("gb28181_media_packets_reordered", "RTP packets received out of order", s.reordered),
            ("gb28181_media_packets_duplicate", "Duplicate RTP packets received", s.duplicates),
            ("gb28181_media_keyframes", "Keyframes (GOP starts) received", s.keyframes),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        drops = CounterMetricFamily(
            "gb28181_media_drops",
            "RTP packets dropped by reason (ssrc: SSRC rejected, source, malformed, closed)",
            labels=["reason"],
        )
        for reason, count in sorted(s.drops.items()):
            drops.add_metric([reason], count)
        yield drops
        bitrate = GaugeMetricFamily(
            "gb28181_media_stream_bitrate_bits_per_second",
            f"Received bitrate of a live stream (first {MAX_STREAM_SERIES} streams)",
            labels=["channel"],
        )
        consumers = GaugeMetricFamily(
            "gb28181_media_stream_consumers",
            f"Viewers of a live stream (first {MAX_STREAM_SERIES} streams)",
            labels=["channel"],
        )
        for stream in s.streams[:MAX_STREAM_SERIES]:
            bitrate.add_metric([stream.channel], stream.bitrate)
            consumers.add_metric([stream.channel], stream.consumers)
        yield bitrate
        yield consumers


class Metrics:
    """All signalling metrics, in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.devices_registered = Gauge(
            "gb28181_devices_registered", "Devices with an unexpired registration", registry=r
        )
        self.devices_online = Gauge(
            "gb28181_devices_online", "Devices online (registered and keeping alive)", registry=r
        )
        self.sip_messages = Counter(
            "gb28181_sip_messages",
            "SIP requests received (in) and sent (out), by method",
            ["method", "direction"],
            registry=r,
        )
        self.sip_responses = Counter(
            "gb28181_sip_responses",
            "SIP responses by status code and CSeq method, received (in) and sent (out)",
            ["code", "method", "direction"],
            registry=r,
        )
        self.sip_parse_errors = Counter(
            "gb28181_sip_parse_errors",
            "SIP messages that could not be parsed, by transport",
            ["transport"],
            registry=r,
        )
        self.register_seconds = Histogram(
            "gb28181_register_duration_seconds",
            "Time to handle one REGISTER, from parsed request to response",
            buckets=_REGISTER_BUCKETS,
            registry=r,
        )
        self.auth_failures = Counter(
            "gb28181_auth_failures",
            "Failed REGISTER authentications by reason",
            ["reason"],
            registry=r,
        )
        self.status_changes = Counter(
            "gb28181_device_status_changes",
            "Device online/offline transitions by reason",
            ["online", "reason"],
            registry=r,
        )
        self.store_flush_failures = Gauge(
            "gb28181_store_flush_failures",
            "Write-behind flushes to storage that failed (data kept and retried)",
            registry=r,
        )
        self.queries = Counter(
            "gb28181_manscdp_queries",
            "MANSCDP queries and controls by CmdType and outcome "
            "(sent, answered, partial, timeout, failed, offline)",
            ["cmd_type", "outcome"],
            registry=r,
        )
        self.catalog_items = Counter(
            "gb28181_catalog_changes",
            "Catalog nodes changed by syncs and notifications, by change kind",
            ["kind"],
            registry=r,
        )
        self.alarms = Counter(
            "gb28181_alarms",
            "Alarms received from devices, by AlarmMethod",
            ["method"],
            registry=r,
        )
        self.faults = Counter(
            "gb28181_faults",
            "Faults raised (regulation art. 10), by kind",
            ["kind"],
            registry=r,
        )
        self.subscriptions_refused = Counter(
            "gb28181_subscriptions_refused",
            "Subscriptions a device refused or dropped, by event package",
            ["event"],
            registry=r,
        )
        self.media_start_seconds = Histogram(
            "gb28181_media_start_latency_seconds",
            "Time from INVITE sent to the first media packet of a live stream",
            buckets=_START_BUCKETS,
            registry=r,
        )
        self._media: _MediaCollector | None = None
        self._msg_children: dict[tuple[str, str], Counter] = {}
        self._query_children: dict[tuple[str, str], Counter] = {}
        self._resp_children: dict[tuple[int, str, str], Counter] = {}

    def bind_device_counts(
        self, registered: Callable[[], float], online: Callable[[], float]
    ) -> None:
        """Read the device gauges from callables at scrape time."""
        self.devices_registered.set_function(registered)
        self.devices_online.set_function(online)

    def bind_media(self, source: Callable[[], MediaSample]) -> None:
        """Read the media metrics from ``source`` at scrape time (once; later calls rebind)."""
        if self._media is None:
            self._media = _MediaCollector(source)
            self.registry.register(self._media)
        else:
            self._media.source = source

    def message(self, method: str, direction: str) -> None:
        """Count one SIP request."""
        key = (method, direction)
        child = self._msg_children.get(key)
        if child is None:
            if len(self._msg_children) >= 256:  # peers can invent methods
                key = ("OTHER", direction)
                child = self._msg_children.get(key)
            if child is None:
                child = self.sip_messages.labels(*key)
                self._msg_children[key] = child
        child.inc()

    def response(self, code: int, method: str, direction: str) -> None:
        """Count one SIP response."""
        key = (code, method, direction)
        child = self._resp_children.get(key)
        if child is None:
            if len(self._resp_children) >= 1024:
                key = (code, "OTHER", direction)
                child = self._resp_children.get(key)
            if child is None:
                child = self.sip_responses.labels(str(code), key[1], direction)
                self._resp_children[key] = child
        child.inc()

    def auth_failure(self, reason: str) -> None:
        """Count a failed authentication (RegistrarMetrics)."""
        self.auth_failures.labels(reason).inc()

    def status_change(self, online: bool, reason: str) -> None:
        """Count a device status transition (RegistrarMetrics)."""
        self.status_changes.labels("true" if online else "false", reason).inc()

    def query(self, cmd_type: str, outcome: str) -> None:
        """Count one MANSCDP query or control event (QueryMetrics)."""
        key = (cmd_type, outcome)
        child = self._query_children.get(key)
        if child is None:
            child = self.queries.labels(cmd_type, outcome)
            self._query_children[key] = child
        child.inc()

    def catalog_change(self, kind: str, count: int = 1) -> None:
        """Count catalog node changes of one kind (added, updated, removed, status...)."""
        if count:
            self.catalog_items.labels(kind).inc(count)

    def alarm(self, method: str) -> None:
        """Count one alarm (AlarmMetrics); methods are short digit strings, bounded here."""
        label = method if len(method) <= 8 and method.isdigit() else "other"
        self.alarms.labels(label).inc()

    def fault(self, kind: str) -> None:
        """Count one fault raised (FaultMetrics); kinds are the platform's own names."""
        self.faults.labels(kind).inc()

    def subscription_refused(self, event: str) -> None:
        """Count a refused or dropped subscription; events are the platform's own names."""
        self.subscriptions_refused.labels(event).inc()

    def render(self) -> bytes:
        """The text exposition format for ``/metrics``."""
        return generate_latest(self.registry)
