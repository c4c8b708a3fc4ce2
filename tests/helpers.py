"""Shared test helpers: third-party peers that must be present in CI."""

from __future__ import annotations

import os
import shutil

import pytest

#: Set by .ci/run: a missing peer (SIPp, pjsua2, PostgreSQL) fails instead of skipping.
REQUIRE_PEERS = os.environ.get("GB28181_REQUIRE_PEERS") == "1"


def need(available: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a third-party peer is missing."""
    if available:
        return
    if REQUIRE_PEERS:
        pytest.fail(f"{reason} (GB28181_REQUIRE_PEERS=1)")
    pytest.skip(reason)


def sipp_path() -> str:
    """Path of the SIPp binary, skipping/failing when it is not installed."""
    path = shutil.which("sipp")
    need(path is not None, "sipp not installed (Debian package sip-tester): SIPp tests skipped")
    assert path is not None
    return path
