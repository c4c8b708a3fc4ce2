"""Metrics: names, labels, cached children, bounded label sets."""

from __future__ import annotations

from gb28181.metrics import MAX_STREAM_SERIES, MediaSample, Metrics, StreamSample


def test_counters_and_gauges_render_with_prometheus_names() -> None:
    m = Metrics()
    m.bind_device_counts(lambda: 3, lambda: 2)
    m.message("REGISTER", "in")
    m.message("REGISTER", "in")
    m.response(401, "REGISTER", "out")
    m.auth_failure("bad_response")
    m.status_change(True, "registered")
    m.register_seconds.observe(0.0004)
    text = m.render().decode()
    assert "gb28181_devices_registered 3.0" in text
    assert "gb28181_devices_online 2.0" in text
    assert 'gb28181_sip_messages_total{direction="in",method="REGISTER"} 2.0' in text
    assert 'gb28181_sip_responses_total{code="401",direction="out",method="REGISTER"} 1.0' in text
    assert 'gb28181_auth_failures_total{reason="bad_response"} 1.0' in text
    assert 'gb28181_device_status_changes_total{online="true",reason="registered"} 1.0' in text
    assert "gb28181_register_duration_seconds_count 1.0" in text


def test_invented_methods_cannot_grow_labels_without_bound() -> None:
    m = Metrics()
    for i in range(1000):
        m.message(f"X{i}", "in")
    series = [
        line
        for line in m.render().decode().splitlines()
        if line.startswith("gb28181_sip_messages_total{")
    ]
    assert len(series) <= 257
    assert any('method="OTHER"' in line for line in series)


def test_two_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.message("MESSAGE", "in")
    assert (
        b.registry.get_sample_value(
            "gb28181_sip_messages_total", {"method": "MESSAGE", "direction": "in"}
        )
        is None
    )


def test_media_metrics_are_read_at_scrape_time_with_bounded_streams() -> None:
    m = Metrics()
    text = m.render().decode()
    assert "gb28181_media_sessions" not in text  # nothing until a source is bound
    sample = MediaSample(sessions=2, consumers=3, packets=5, bytes=700, drops={"ssrc": 4})
    sample.streams = [StreamSample(f"ch{i}", 1000.0 * i, 1) for i in range(MAX_STREAM_SERIES + 5)]
    m.bind_media(lambda: sample)
    m.bind_media(lambda: sample)  # rebinding does not register twice
    m.media_start_seconds.observe(0.3)
    text = m.render().decode()
    assert "gb28181_media_sessions 2.0" in text
    assert "gb28181_media_consumers 3.0" in text
    assert "gb28181_media_packets_total 5.0" in text
    assert "gb28181_media_bytes_total 700.0" in text
    assert "gb28181_media_packets_reordered_total 0.0" in text
    assert 'gb28181_media_drops_total{reason="ssrc"} 4.0' in text
    assert 'gb28181_media_stream_bitrate_bits_per_second{channel="ch2"} 2000.0' in text
    assert text.count("gb28181_media_stream_bitrate_bits_per_second{") == MAX_STREAM_SERIES
    assert "gb28181_media_start_latency_seconds_count 1.0" in text
    sample.packets = 9
    assert "gb28181_media_packets_total 9.0" in m.render().decode()


def test_fast_histogram_renders_like_prometheus_client() -> None:
    """The hot-path histogram gives the same buckets, count and sum as a client Histogram."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    m = Metrics()
    registry = CollectorRegistry()
    reference = Histogram(
        "gb28181_register_duration_seconds",
        "Time to handle one REGISTER, from parsed request to response",
        buckets=m.register_seconds.bounds,
        registry=registry,
    )
    for value in (0.00005, 0.0001, 0.0003, 0.0025, 0.07, 2.0, 0.0001):
        m.register_seconds.observe(value)
        reference.observe(value)

    def series(text: str) -> list[str]:
        return [
            line
            for line in text.splitlines()
            if line.startswith("gb28181_register_duration_seconds_")
            and not line.startswith("gb28181_register_duration_seconds_created")
        ]

    assert series(m.render().decode()) == series(generate_latest(registry).decode())


def test_response_labels_are_bounded_too() -> None:
    m = Metrics()
    for i in range(2000):
        m.response(200, f"X{i}", "out")
    text = m.render().decode()
    assert text.count("gb28181_sip_responses_total{") <= 1025
    assert 'gb28181_sip_responses_total{code="200",direction="out",method="OTHER"}' in text
