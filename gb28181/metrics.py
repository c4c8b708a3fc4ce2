"""Prometheus metrics of the signalling server.

Names follow prometheus-client conventions: ``gb28181_`` prefix, base units
(seconds), ``_total`` on counters. Each :class:`Metrics` owns its own
registry so several servers (in tests) do not collide, and label children are
cached because ``Counter.labels()`` is too slow for the per-message path.
Gauges of registered/online devices are read from the registrar at scrape
time, which costs nothing per message.

The per-message series (SIP requests and responses, the REGISTER duration
histogram) are not prometheus-client objects at all: each ``inc`` of those
takes a lock and a few attribute hops, about a microsecond, paid twice per
keepalive. They are plain integers in dictionaries, bumped on the event
loop and folded into metric families at scrape time (:class:`_FoldedCollector`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString as _float_to_go

__all__ = ["CONTENT_TYPE_LATEST", "MAX_STREAM_SERIES", "MediaSample", "Metrics", "StreamSample"]

#: How prometheus-client spells a bucket bound (``le``); untyped in the library.
_le = cast(Callable[[float], str], _float_to_go)

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
    #: Video frames per second arriving (the worker's 2 s window).
    fps: float = 0.0


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
    frames: int = 0
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
            ("gb28181_media_frames", "Video frames received", s.frames),
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
        fps = GaugeMetricFamily(
            "gb28181_media_stream_fps",
            f"Video frames per second of a live stream (first {MAX_STREAM_SERIES} streams)",
            labels=["channel"],
        )
        for stream in s.streams[:MAX_STREAM_SERIES]:
            bitrate.add_metric([stream.channel], stream.bitrate)
            consumers.add_metric([stream.channel], stream.consumers)
            fps.add_metric([stream.channel], stream.fps)
        yield bitrate
        yield consumers
        yield fps


class FastHistogram:
    """A histogram for the hot path: ``observe`` is a bisect and two additions.

    Rendered by :class:`_FoldedCollector` with the same series a prometheus-client
    ``Histogram`` has (``_bucket`` with ``le``, ``_count``, ``_sum``).
    """

    __slots__ = ("bounds", "counts", "doc", "name", "sum")

    def __init__(self, name: str, doc: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.doc = doc
        self.bounds = tuple(sorted(buckets))
        #: One count per bound (value <= bound, not cumulative), then +Inf.
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            buckets.append((_le(bound), total))
        return HistogramMetricFamily(self.name, self.doc, buckets=buckets, sum_value=self.sum)


class _FoldedCollector:
    """Renders the per-message counters kept as plain integers (module docstring)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # unchecked collector, like _MediaCollector

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        messages = CounterMetricFamily(
            "gb28181_sip_messages",
            "SIP requests received (in) and sent (out), by method",
            labels=["method", "direction"],
        )
        # list(): a C-level copy, safe against a concurrent insert on the loop thread.
        for (method, direction), count in list(m._msg_counts.items()):
            messages.add_metric([method, direction], count)
        yield messages
        responses = CounterMetricFamily(
            "gb28181_sip_responses",
            "SIP responses by status code and CSeq method, received (in) and sent (out)",
            labels=["code", "method", "direction"],
        )
        for (code, method, direction), count in list(m._resp_counts.items()):
            responses.add_metric([str(code), method, direction], count)
        yield responses
        yield m.register_seconds.family()


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
        #: (method, direction) -> requests counted (rendered as gb28181_sip_messages_total).
        self._msg_counts: dict[tuple[str, str], int] = {}
        #: (code, method, direction) -> responses counted (gb28181_sip_responses_total).
        self._resp_counts: dict[tuple[int, str, str], int] = {}
        self.sip_parse_errors = Counter(
            "gb28181_sip_parse_errors",
            "SIP messages that could not be parsed, by transport",
            ["transport"],
            registry=r,
        )
        self.register_seconds = FastHistogram(
            "gb28181_register_duration_seconds",
            "Time to handle one REGISTER, from parsed request to response",
            _REGISTER_BUCKETS,
        )
        r.register(_FoldedCollector(self))
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
        self.media_keyframe_seconds = Histogram(
            "gb28181_media_first_keyframe_latency_seconds",
            "Time from INVITE sent to the first keyframe sent to a consumer of a live stream",
            buckets=_START_BUCKETS,
            registry=r,
        )
        self._media: _MediaCollector | None = None
        self._query_children: dict[tuple[str, str], Counter] = {}
        self._auth_children: dict[str, Counter] = {}
        self._status_children: dict[tuple[bool, str], Counter] = {}

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
        counts = self._msg_counts
        key = (method, direction)
        count = counts.get(key)
        if count is None:
            count = 0
            if len(counts) >= 256:  # peers can invent methods
                key = ("OTHER", direction)
                count = counts.get(key, 0)
        counts[key] = count + 1

    def response(self, code: int, method: str, direction: str) -> None:
        """Count one SIP response."""
        counts = self._resp_counts
        key = (code, method, direction)
        count = counts.get(key)
        if count is None:
            count = 0
            if len(counts) >= 1024:
                key = (code, "OTHER", direction)
                count = counts.get(key, 0)
        counts[key] = count + 1

    def auth_failure(self, reason: str) -> None:
        """Count a failed authentication (RegistrarMetrics); reasons are the registrar's own."""
        child = self._auth_children.get(reason)
        if child is None:
            child = self._auth_children[reason] = self.auth_failures.labels(reason)
        child.inc()

    def status_change(self, online: bool, reason: str) -> None:
        """Count a device status transition (RegistrarMetrics); reasons are the platform's own."""
        key = (online, reason)
        child = self._status_children.get(key)
        if child is None:
            child = self._status_children[key] = self.status_changes.labels(
                "true" if online else "false", reason
            )
        child.inc()

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
