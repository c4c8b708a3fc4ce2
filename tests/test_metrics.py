"""Metrics: names, labels, cached children, bounded label sets."""

from __future__ import annotations

from gb28181.metrics import Metrics


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
