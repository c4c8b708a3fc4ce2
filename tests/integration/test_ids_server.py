"""Central ID allocation end to end: IDs issued over HTTP may register, others get 403."""

from __future__ import annotations

from pathlib import Path

from gb28181.config import load_config
from gb28181.server import Platform

from .conftest import DOMAIN, PASSWORD, SERVER_ID, api_client, platform_env
from .sip_client import TestDevice

_CONFIG = """
[ids]
refuse_unissued = true

[[ids.ranges]]
department = "交警支队"
prefix = "3402000000"
types = ["131", "132"]
network = "0"
serial_start = 1
serial_end = 99
"""


async def test_only_issued_ids_register(tmp_path: Path) -> None:
    path = tmp_path / "gb28181.toml"
    path.write_text(_CONFIG, encoding="utf-8")
    platform = Platform(load_config(path, env=platform_env(tmp_path)))
    await platform.start()
    try:
        async with api_client(platform) as http:
            r = await http.post(
                "/api/v1/ids", json={"department": "交警支队", "type": "132", "count": 2}
            )
            assert r.status_code == 201, r.text
            issued = [i["id"] for i in r.json()["items"]]
        assert issued == ["34020000001320000001", "34020000001320000002"]

        stranger = TestDevice(
            "34020000001320000050", PASSWORD, platform.sip_addr, server_id=SERVER_ID,
            domain=DOMAIN,
        )  # fmt: skip
        await stranger.open()
        try:
            refused = await stranger.register()
        finally:
            await stranger.close()
        assert (refused.status, refused.reason) == (403, "ID Not Issued")

        camera = TestDevice(
            issued[1], PASSWORD, platform.sip_addr, server_id=SERVER_ID, domain=DOMAIN
        )
        await camera.open()
        try:
            assert (await camera.register()).status == 200
        finally:
            await camera.close()
        assert platform.registrar is not None
        st = platform.registrar.get(issued[1])
        assert st is not None and st.registered
    finally:
        await platform.stop()
