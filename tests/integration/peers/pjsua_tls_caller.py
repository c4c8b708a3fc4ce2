"""A department's client on SIP over TLS with a client certificate, played by pjsua2 (PJSIP).

Run as a separate process by the integration tests:

    python pjsua_tls_caller.py --server 127.0.0.1:5061 --server-id ... --domain ...
        --id ... --password ... --cert C.pem --key K.pem [--no-register]

It opens a TLS transport presenting the certificate, registers over it (digest on top), prints
``{"register": code}`` and then executes one command per stdin line, printing one JSON line per
command:

* ``message <content-type> <body as a JSON string>``: a MESSAGE to the platform; prints
  ``{"code", "reason"}`` of the final response.
* ``invite <channel> <media port> <ssrc>``: an INVITE for the channel whose offer is rewritten
  to the GB/T 28181 form (``s=Play``, ``m=video ... PS/90000``, ``y=``); prints the final
  ``code``, ``reason`` and the ``Warning`` header of the response, then hangs up.
* ``quit``.
"""

from __future__ import annotations

import argparse
import json
import select
import sys
import time
from typing import Any

import pjsua2 as pj


class Client(pj.Account):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.reg_codes: list[int] = []
        self.im_status: list[tuple[int, str]] = []

    def onRegState(self, prm: Any) -> None:
        self.reg_codes.append(int(prm.code))

    def onInstantMessageStatus(self, prm: Any) -> None:
        self.im_status.append((int(prm.code), str(prm.reason)))


class Caller(pj.Call):  # type: ignore[misc]
    def __init__(self, acc: Any, sdp: str) -> None:
        super().__init__(acc)
        self.sdp = sdp
        self.final: tuple[int, str] | None = None
        self.received: list[str] = []

    def onCallSdpCreated(self, prm: Any) -> None:
        prm.sdp.wholeSdp = self.sdp

    def onCallTsxState(self, prm: Any) -> None:
        self._keep(prm.e)

    def _keep(self, event: Any) -> None:
        """Keep the raw text of a received response (its Warning header)."""
        if event.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        state = event.body.tsxState
        if state.type == pj.PJSIP_EVENT_RX_MSG:
            whole = str(state.src.rdata.wholeMsg)
            if whole:
                self.received.append(whole)

    def onCallState(self, prm: Any) -> None:
        self._keep(prm.e)
        info = self.getInfo()
        if self.final is None and info.lastStatusCode >= 200:
            self.final = (int(info.lastStatusCode), str(info.lastReason))


def wait(ep: Any, cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ep.libHandleEvents(20)
        if cond():
            return True
    return False


def gb_offer(own_id: str, port: int, ssrc: str) -> str:
    lines = [
        "v=0",
        f"o={own_id} 0 0 IN IP4 127.0.0.1",
        "s=Play",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=video {port} RTP/AVP 96",
        "a=recvonly",
        "a=rtpmap:96 PS/90000",
        f"y={ssrc}",
    ]
    return "\r\n".join(lines) + "\r\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--server-id", required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--no-register", action="store_true")
    args = ap.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.tlsConfig.certFile = args.cert
    tcfg.tlsConfig.privKeyFile = args.key
    tcfg.tlsConfig.verifyServer = False
    tid = ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)
    ep.libStart()

    target = f"sip:{args.server_id}@{args.server};transport=tls"
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{args.id}@{args.domain}"
    acfg.sipConfig.transportId = tid
    if not args.no_register:
        acfg.regConfig.registrarUri = target
        acfg.regConfig.timeoutSec = 3600
    acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", args.id, 0, args.password))
    client = Client()
    client.create(acfg)
    if not args.no_register:
        ok = wait(ep, lambda: any(c >= 200 for c in client.reg_codes), 10)
        print(json.dumps({"register": client.reg_codes[-1] if ok else None}), flush=True)
    else:
        print(json.dumps({"register": None}), flush=True)

    bcfg = pj.BuddyConfig()
    bcfg.uri = target
    buddy = pj.Buddy()
    buddy.create(client, bcfg)
    calls: list[Caller] = []
    while True:
        ep.libHandleEvents(10)
        ready, _, _ = select.select([sys.stdin], [], [], 0)
        if not ready:
            continue
        line = sys.stdin.readline()
        if not line or line.strip() == "quit":
            break
        cmd, _, rest = line.strip().partition(" ")
        if cmd == "message":
            ctype, _, body = rest.partition(" ")
            prm = pj.SendInstantMessageParam()
            prm.contentType = ctype
            prm.content = json.loads(body)
            n = len(client.im_status)
            buddy.sendInstantMessage(prm)
            ok = wait(ep, lambda n=n: len(client.im_status) > n, 10)
            code, reason = client.im_status[-1] if ok else (None, "")
            print(json.dumps({"code": code, "reason": reason}), flush=True)
        elif cmd == "invite":
            channel, port, ssrc = rest.split()
            call = Caller(client, gb_offer(args.id, int(port), ssrc))
            calls.append(call)
            cprm = pj.CallOpParam(True)
            call.makeCall(f"sip:{channel}@{args.server};transport=tls", cprm)
            wait(ep, lambda call=call: call.final is not None, 30)
            final = call.final or (None, "")
            warning = ""
            for msg in call.received:
                for header in msg.splitlines():
                    if header.lower().startswith("warning:"):
                        warning = header.partition(":")[2].strip()
            print(
                json.dumps({"code": final[0], "reason": final[1], "warning": warning}),
                flush=True,
            )
            if final[0] is not None and final[0] < 300:
                call.hangup(pj.CallOpParam(True))
                wait(ep, lambda: False, 0.5)
    del buddy
    calls.clear()
    client.shutdown()
    ep.libDestroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
