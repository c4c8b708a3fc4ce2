"""A GB/T 28181 device played by pjsua2 (PJSIP), a SIP stack we did not write.

Run as a separate process by the integration tests (PJSIP owns its threads
and sockets; keeping it out of the pytest process keeps both simple):

    python pjsua_device.py --server 127.0.0.1:5060 --server-id ... --domain ...
        --device ... --password ... [--transport udp|tcp]

It registers with digest auth, sends a Keepalive MESSAGE with content type
``Application/MANSCDP+xml``, re-registers, optionally waits for one MESSAGE
from the platform (``--expect-message``, of a given CmdType with ``--expect-cmd``: the
platform also sends its own Catalog query after registration), and prints one JSON line with the
status codes it saw. Exit code 0 when every step got a 2xx.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import pjsua2 as pj


class Device(pj.Account):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.reg_codes: list[int] = []
        self.im_codes: list[int] = []
        self.received: list[dict[str, Any]] = []

    def onRegState(self, prm: Any) -> None:
        self.reg_codes.append(int(prm.code))

    def onInstantMessageStatus(self, prm: Any) -> None:
        self.im_codes.append(int(prm.code))

    def onInstantMessage(self, prm: Any) -> None:
        self.received.append(
            {"from": prm.fromUri, "content_type": prm.contentType, "body": prm.msgBody}
        )


def wait(ep: Any, cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ep.libHandleEvents(20)
        if cond():
            return True
    return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--server-id", required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--transport", default="udp", choices=["udp", "tcp"])
    ap.add_argument("--expect-message", type=float, default=0.0, metavar="SECONDS")
    ap.add_argument(
        "--expect-cmd",
        default="",
        metavar="CMDTYPE",
        help="with --expect-message: wait for a MESSAGE of this CmdType (others are kept too)",
    )
    args = ap.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    ttype = pj.PJSIP_TRANSPORT_TCP if args.transport == "tcp" else pj.PJSIP_TRANSPORT_UDP
    ep.transportCreate(ttype, tcfg)
    ep.libStart()

    suffix = ";transport=tcp" if args.transport == "tcp" else ""
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{args.device}@{args.domain}"
    acfg.regConfig.registrarUri = f"sip:{args.server_id}@{args.server}{suffix}"
    acfg.regConfig.timeoutSec = 3600
    acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", args.device, 0, args.password))
    dev = Device()
    dev.create(acfg)
    result: dict[str, Any] = {}
    ok = wait(ep, lambda: any(c >= 200 for c in dev.reg_codes), 10)
    result["register"] = dev.reg_codes[-1] if ok else None

    buddy_cfg = pj.BuddyConfig()
    buddy_cfg.uri = f"sip:{args.server_id}@{args.server}{suffix}"
    buddy = pj.Buddy()
    buddy.create(dev, buddy_cfg)
    prm = pj.SendInstantMessageParam()
    prm.contentType = "Application/MANSCDP+xml"
    prm.content = (
        '<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n'
        f"<SN>1</SN>\r\n<DeviceID>{args.device}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n"
    )
    buddy.sendInstantMessage(prm)
    ok = wait(ep, lambda: bool(dev.im_codes), 10)
    result["keepalive"] = dev.im_codes[-1] if ok else None

    n = len(dev.reg_codes)
    dev.setRegistration(True)
    ok = wait(ep, lambda: len(dev.reg_codes) > n, 10)
    result["reregister"] = dev.reg_codes[-1] if ok else None

    if args.expect_message:
        tag = f"<CmdType>{args.expect_cmd}</CmdType>"
        wait(
            ep,
            lambda: (
                any(tag in m["body"] for m in dev.received)
                if args.expect_cmd
                else bool(dev.received)
            ),
            args.expect_message,
        )
        result["received"] = dev.received

    print(json.dumps(result), flush=True)
    codes = [result["register"], result["keepalive"], result["reregister"]]
    good = all(c is not None and 200 <= c < 300 for c in codes)
    if args.expect_message and not dev.received:
        good = False
    del buddy
    dev.shutdown()
    ep.libDestroy()
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
