"""Digest-auth cost on the registrar's hot path: µs per challenge, per
Authorization parse, per verify (with and without qop), and per full round.

Run on demand:  python bench/bench_digest.py
The baseline in the same run is one ``hashlib.md5(...).hexdigest()``; a verify
needs three of them plus the nonce MAC, so it cannot cost less than ~4 of those.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gb28181.sip import (  # noqa: E402
    DigestCredentials,
    DigestVerifier,
    NonceIssuer,
    build_authorization,
)

REALM = "3402000000"
DEVICE = "34020000001320000001"
URI = "sip:34020000002000000001@3402000000"
NOW = 1_700_000_000.0
N = 20000


def per_call_us(fn: Callable[[], object], number: int = N) -> float:
    best = min(timeit.Timer(fn).repeat(repeat=5, number=number))
    return best / number * 1e6


def main() -> None:
    verifier = DigestVerifier(NonceIssuer(b"k" * 32, 300.0), REALM, max_tracked_nonces=10**6)
    rows: list[tuple[str, float]] = []
    rows.append(
        ("md5 hexdigest (baseline)", per_call_us(lambda: hashlib.md5(b"a" * 40).hexdigest()))
    )
    rows.append(("challenge + str()", per_call_us(lambda: str(verifier.challenge(NOW)))))
    for qop in (False, True):
        challenge = verifier.challenge(NOW, qop=qop)
        header = str(build_authorization(challenge, "REGISTER", URI, DEVICE, "pw", "cn"))
        parse = functools.partial(DigestCredentials.parse, header)
        rows.append((f"parse Authorization (qop={qop})", per_call_us(parse)))
    # verify without qop: the same credentials may be checked repeatedly
    creds = build_authorization(
        verifier.challenge(NOW, qop=False), "REGISTER", URI, DEVICE, "pw", "cn"
    )
    rows.append(
        (
            "verify (no qop)",
            per_call_us(
                lambda: verifier.verify(creds, "REGISTER", "pw", NOW + 1, expected_user=DEVICE)
            ),
        )
    )
    # verify with qop: every call needs a fresh nc, prepared outside the timer
    challenge = verifier.challenge(NOW)
    counted = iter(
        [
            build_authorization(challenge, "REGISTER", URI, DEVICE, "pw", "cn", nc)
            for nc in range(1, 6 * N + 2)
        ]
    )
    rows.append(
        (
            "verify (qop=auth)",
            per_call_us(
                lambda: verifier.verify(
                    next(counted), "REGISTER", "pw", NOW + 1, expected_user=DEVICE
                )
            ),
        )
    )
    # the registrar's whole digest share of one registration
    fresh = itertools.count(1)

    def full_round() -> object:
        ch = verifier.challenge(NOW)
        text = str(build_authorization(ch, "REGISTER", URI, DEVICE, "pw", "cn", next(fresh)))
        return verifier.verify(
            DigestCredentials.parse(text), "REGISTER", "pw", NOW + 1, expected_user=DEVICE
        )

    rows.append(("challenge + client answer + parse + verify", per_call_us(full_round, N // 4)))
    for name, us in rows:
        print(f"{name:46} {us:8.2f} µs")


if __name__ == "__main__":
    main()
