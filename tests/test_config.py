"""Configuration: defaults, TOML, environment overrides, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gb28181.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_default_file_loads() -> None:
    cfg = load_config(ROOT / "conf" / "gb28181.toml", env={})
    assert cfg.sip.id == "34020000002000000001"
    assert cfg.sip.domain == "3402000000"
    assert cfg.sip.port == 5060
    assert cfg.sip.keepalive_interval == 60 and cfg.sip.keepalive_misses == 3
    assert cfg.storage.url == "sqlite:///./var/gb28181.db"
    assert cfg.http.port == 8080
    assert cfg.sip.advertised_host not in ("", "0.0.0.0")


def test_builtin_defaults_without_file() -> None:
    cfg = load_config(None, env={})
    assert cfg.sip.domain == cfg.sip.id[:10]


def test_environment_overrides_every_section() -> None:
    cfg = load_config(
        None,
        env={
            "GB28181_SIP_PORT": "5070",
            "GB28181_SIP_STRICT_IDS": "false",
            "GB28181_SIP_KEEPALIVE_INTERVAL": "30",
            "GB28181_HTTP_PORT": "9090",
            "GB28181_STORAGE_URL": "postgresql://postgres@127.0.0.1/gb",
            "GB28181_LOG_LEVEL": "debug",
        },
    )
    assert cfg.sip.port == 5070
    assert cfg.sip.strict_ids is False
    assert cfg.sip.keepalive_interval == 30.0
    assert cfg.http.port == 9090
    assert cfg.storage.url.startswith("postgresql://")


def test_explicit_domain_and_advertised_host(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[sip]\ndomain = "3402000001"\nadvertised_host = "203.0.113.5"\n')
    cfg = load_config(path, env={})
    assert cfg.sip.domain == "3402000001"
    assert cfg.sip.advertised_host == "203.0.113.5"


def test_listen_address_is_advertised_when_specific() -> None:
    cfg = load_config(None, env={"GB28181_SIP_LISTEN": "127.0.0.1"})
    assert cfg.sip.advertised_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "env", "key"),
    [
        ('[sip]\nid = "123"\n', {}, "sip.id"),
        ('[sip]\ndomain = "12ab"\n', {}, "sip.domain"),
        ("[sip]\nport = 70000\n", {}, "sip.port"),
        ('[sip]\nport = "x"\n', {}, "sip.port"),
        ('[sip]\nadvertised_host = "0.0.0.0"\n', {}, "sip.advertised_host"),
        ('[sip]\nlisten = "not-an-ip"\n', {}, "sip.listen"),
        ("[sip]\nkeepalive_misses = 0\n", {}, "sip.keepalive_misses"),
        ("[sip]\nnonsense = 1\n", {}, "sip.nonsense"),
        ("[bogus]\n", {}, "bogus"),
        ("[sip]\ntls_port = 5061\n", {}, "sip.tls_cert"),
        ('[storage]\nurl = "mysql://x"\n', {}, "storage.url"),
        ('[log]\nlevel = "LOUD"\n', {}, "log.level"),
        ("", {"GB28181_SIP_PORT": "abc"}, "GB28181_SIP_PORT"),
        ("", {"GB28181_SIP_STRICT_IDS": "maybe"}, "GB28181_SIP_STRICT_IDS"),
        ("not toml [", {}, "config"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, env: dict[str, str], key: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml", env={})


def test_ids_ranges_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "ids.toml"
    path.write_text(
        "[ids]\nrefuse_unissued = true\n[[ids.ranges]]\n"
        'department = "交警"\nprefix = "3402000000"\ntypes = ["131", "132"]\n'
        "serial_start = 1\nserial_end = 999\n",
        encoding="utf-8",
    )
    cfg = load_config(path, env={})
    assert cfg.ids.refuse_unissued
    assert cfg.ids.ranges[0].block("131") == ("34020000001310000001", "34020000001310000999")
    assert load_config(None, env={}).ids.ranges == ()


def test_bad_ids_range_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "ids.toml"
    path.write_text('[[ids.ranges]]\ndepartment = "d"\nprefix = "34"\ntypes = ["131"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.key == "ids.ranges[0].prefix"


def test_position_interval_is_bounded() -> None:
    assert load_config(None, env={}).devices.position_interval == 0
    assert load_config(None, env={}).devices.alarm_subscribe
    with pytest.raises(ConfigError, match=r"devices\.position_interval"):
        load_config(None, env={"GB28181_DEVICES_POSITION_INTERVAL": "-1"})


def test_media_defaults_and_per_device_stream_modes() -> None:
    media = load_config(None, env={}).media
    assert media.enabled and media.stream_mode == "UDP"
    assert (media.port_first, media.port_last) == (30000, 30999)
    env = {
        "GB28181_MEDIA_STREAM_MODE": "tcp-passive",
        "GB28181_MEDIA_DEVICE_MODES": "34020000001320000001=TCP-ACTIVE, 34020000001320000002=udp",
    }
    media = load_config(None, env=env).media
    assert media.mode_of("34020000001320000001") == "TCP-ACTIVE"
    assert media.mode_of("34020000001320000002") == "UDP"
    assert media.mode_of("34020000001320000003") == "TCP-PASSIVE"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"GB28181_MEDIA_STREAM_MODE": "SCTP"}, "media.stream_mode"),
        ({"GB28181_MEDIA_DEVICE_MODES": "3402=RTSP"}, "media.device_modes"),
        ({"GB28181_MEDIA_PORT_FIRST": "40000", "GB28181_MEDIA_PORT_LAST": "39999"},
         "media.port_first"),
        ({"GB28181_MEDIA_INVITE_TIMEOUT": "0"}, "media.no_media_timeout"),
        ({"GB28181_MEDIA_ADVERTISED_HOST": "0.0.0.0"}, "media.advertised_host"),
    ],
)  # fmt: skip
def test_bad_media_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, env=env)
    assert err.value.key == key


def test_recording_settings_parse() -> None:
    cfg = load_config(
        None,
        env={
            "GB28181_RECORDING_ALWAYS": "34020000001320000001, 34020000001320000002",
            "GB28181_RECORDING_SCHEDULES": "34020000001320000003=08:00-18:00;22:00-06:00",
            "GB28181_RECORDING_RETENTION_BY_CLASS": "3=90,4=180",
            "GB28181_RECORDING_QUOTA_BYTES": "1000000000",
        },
    ).recording
    assert cfg.root == "./var/recordings" and cfg.segment_seconds == 60
    assert cfg.always_channels() == ("34020000001320000001", "34020000001320000002")
    assert cfg.schedule_windows() == {"34020000001320000003": ((480, 1080), (1320, 360))}
    assert cfg.retention_classes() == {3: 90.0, 4: 180.0} and cfg.quota_bytes == 10**9


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"GB28181_RECORDING_SEGMENT_SECONDS": "0"}, "recording.segment_seconds"),
        ({"GB28181_RECORDING_RETENTION_BY_CLASS": "x=1"}, "recording.retention_by_class"),
        ({"GB28181_RECORDING_RETENTION_BY_CLASS": "3=0"}, "recording.retention_by_class"),
        ({"GB28181_RECORDING_SCHEDULES": "1=25:00-26:00"}, "recording.schedules"),
        ({"GB28181_RECORDING_SCHEDULES": "1=0800"}, "recording.schedules"),
        ({"GB28181_RECORDING_QUOTA_BYTES": "-1"}, "recording.quota_bytes"),
        ({"GB28181_RECORDING_ROOT": ""}, "recording.root"),
    ],
)
def test_bad_recording_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, env=env)
    assert err.value.key == key


def test_upstream_tables_parse_and_bad_values_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        """
[[upstream]]
id = "44010000002000000001"
host = "127.0.0.1"
port = 5070
transport = "tcp"
password = "p"
share = ["3402000000"]
id_map = { "34020000001320000001" = "44010000001320000009" }
"""
    )
    cfg = load_config(path, env={})
    (up,) = cfg.upstream
    assert up.transport == "tcp" and up.share == ("3402000000",)
    assert dict(up.id_map) == {"34020000001320000001": "44010000001320000009"}
    path.write_text('[[upstream]]\nid = "123"\nhost = "h"\n')
    with pytest.raises(ConfigError, match=r"upstream\[0\]\.id"):
        load_config(path, env={})
    path.write_text('[[upstream]]\nid = "44010000002000000001"\nhost = "h"\ntransport = "sctp"\n')
    with pytest.raises(ConfigError, match=r"upstream\[0\]\.transport"):
        load_config(path, env={})
    path.write_text('[[upstream]]\nid = "44010000002000000001"\nhost = "h"\nbogus = 1\n')
    with pytest.raises(ConfigError, match=r"upstream\[0\]\.bogus"):
        load_config(path, env={})
