"""Decisions per second of :meth:`authz.Policy.decide` (run on demand, not a test).

100,000 channels and 10,000 principals spread over 50 departments and 4 levels, a quarter of
the principals with recurring windows and a region-prefix scope, channels with a mix of
security classes, sharing and level-3/level-4 lists. The request stream is drawn in advance so
that the timed loop measures ``decide`` and the loop itself only.

    python bench/bench_authz.py [--decisions N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from authz import (
    Action,
    ChannelInfo,
    Grant,
    GrantBook,
    GrantKind,
    Policy,
    Principal,
    PrincipalKind,
    Scope,
    Window,
)

CHANNELS = 100_000
PRINCIPALS = 10_000
DEPARTMENTS = 50
REGIONS = ["370202", "370203", "370211", "370212", "370213", "370214", "370281", "370283"]


def build(rng: random.Random) -> tuple[list[Principal], list[ChannelInfo]]:
    departments = [f"dept{i:02d}" for i in range(DEPARTMENTS)]
    channels = []
    for n in range(CHANNELS):
        region = rng.choice(REGIONS)
        listed = frozenset(rng.sample(departments, 3))
        channels.append(
            ChannelInfo(
                channel_id=f"{region}00001320{n:06d}",
                owner_department=rng.choice(departments),
                security_class=rng.choice((0, 0, 1, 2, 3)),
                shared=rng.random() < 0.7,
                shared_with=listed,
                controllable_by=listed,
            )
        )
    principals = []
    for n in range(PRINCIPALS):
        special = n % 4 == 0
        principals.append(
            Principal(
                id=f"37020000002000{n:06d}",
                kind=PrincipalKind.USER,
                department=rng.choice(departments),
                level=rng.randint(1, 4),
                scope=Scope(prefixes=tuple(rng.sample(REGIONS, 3)))
                if special
                else Scope.everything(),
                windows=(Window(6, 9), Window(12, 2), Window(flag="wartime")) if special else (),
                valid_from=0.0,
                valid_to=4e9,
            )
        )
    return principals, channels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=28181)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    principals, channels = build(rng)
    policy = Policy()
    print(
        f"built {len(channels)} channels, {len(principals)} principals "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    actions = list(Action)
    now = 1_720_000_000.0  # July 2024: summer windows open
    requests = [
        (rng.choice(principals), rng.choice(actions), rng.choice(channels))
        for _ in range(args.decisions)
    ]
    decide = policy.decide
    allowed = 0
    t0 = time.perf_counter()
    for principal, action, channel in requests:
        if decide(principal, action, channel, now).allow:
            allowed += 1
    elapsed = time.perf_counter() - t0
    print(
        f"no grants:   {args.decisions / elapsed:>12,.0f} decisions/s "
        f"({elapsed * 1e9 / args.decisions:.0f} ns each, {allowed / args.decisions:.1%} allowed)"
    )

    # The same stream with every principal holding one active grant (the refusal path walks it).
    book = GrantBook()
    grants: dict[str, tuple[Grant, ...]] = {}
    for principal in principals:
        grant = book.apply(
            kind=GrantKind.EMERGENCY_ACCESS,
            target=Scope(prefixes=(rng.choice(REGIONS),)),
            requested_by=principal.id,
            reason="bench",
            now=0.0,
            principal_id=principal.id,
        )
        grants[principal.id] = (grant,)
    manager = Principal("manager", PrincipalKind.USER, "emergency", 1, is_emergency_manager=True)
    for grant in book:
        book.approve(grant.id, manager, now - 1.0, 3600.0)
    active = {p.id: book.active_for(p, now) for p in principals}
    allowed = 0
    t0 = time.perf_counter()
    for principal, action, channel in requests:
        if decide(principal, action, channel, now, grants=active[principal.id]).allow:
            allowed += 1
    elapsed = time.perf_counter() - t0
    print(
        f"with grants: {args.decisions / elapsed:>12,.0f} decisions/s "
        f"({elapsed * 1e9 / args.decisions:.0f} ns each, {allowed / args.decisions:.1%} allowed)"
    )


if __name__ == "__main__":
    main()
