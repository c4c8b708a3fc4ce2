"""RTP port allocation (sans-IO): a pool over a configured range, and single-port SSRC keys.

Multi-port mode (one stream per port) is the most tolerant design: a device that ignores our
``y=`` still lands in the right session (notes §6.4, WVP #127). A released port is quarantined
before reuse (default 15 s): late packets of the old stream must not reach a new session, the
same reason an SSRC is not reused for ~15 s (notes §6.3, ZLMediaKit #267). GB/T 28181 media
has no RTCP we rely on (notes §8.1), so ports are single, not even/odd pairs.

Single-port mode saves ports: every stream goes to one port and :class:`SsrcTable` routes by
SSRC, with the same quarantine on released SSRCs.

Both classes take ``now`` as an argument and hold no sockets; the worker binds, and gives a
port back with :meth:`PortPool.release` if the bind fails.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

__all__ = ["DEFAULT_QUARANTINE", "PortPool", "PortPoolError", "SsrcTable"]

DEFAULT_QUARANTINE = 15.0

T = TypeVar("T")


class PortPoolError(RuntimeError):
    """No port (or SSRC slot) can be given: the range is exhausted, or a caller mistake."""


class PortPool:
    """Ports ``first..last`` (inclusive) handed out oldest-released first.

    :param quarantine: seconds a released port waits before it can be allocated again.
    """

    def __init__(self, first: int, last: int, quarantine: float = DEFAULT_QUARANTINE) -> None:
        if not 0 < first <= last <= 65535:
            raise PortPoolError(f"port range {first}-{last} is invalid")
        self.first = first
        self.last = last
        self.quarantine = quarantine
        self._free: deque[int] = deque(range(first, last + 1))
        # (available_at, port) in release order; release times only grow, so it stays sorted.
        self._cooling: deque[tuple[float, int]] = deque()
        self._used: set[int] = set()

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._used)

    def available(self, now: float) -> int:
        """Number of ports that :meth:`allocate` could return at ``now``."""
        self._thaw(now)
        return len(self._free)

    def allocate(self, now: float, port: int | None = None) -> int:
        """Take a free port (or the given one, if free); return it.

        :raises PortPoolError: none free, or ``port`` outside the range, in use or cooling.
        """
        self._thaw(now)
        if port is None:
            if not self._free:
                raise PortPoolError(f"no free port in {self.first}-{self.last}")
            port = self._free.popleft()
        else:
            if port not in self._free:
                raise PortPoolError(f"port {port} is not free")
            self._free.remove(port)
        self._used.add(port)
        return port

    def release(self, port: int, now: float) -> None:
        """Give a port back; it can be allocated again ``quarantine`` seconds from ``now``.

        :raises PortPoolError: the port is not allocated.
        """
        if port not in self._used:
            raise PortPoolError(f"port {port} is not allocated")
        self._used.discard(port)
        self._cooling.append((now + self.quarantine, port))

    def _thaw(self, now: float) -> None:
        cooling = self._cooling
        while cooling and cooling[0][0] <= now:
            self._free.append(cooling.popleft()[1])


class SsrcTable(Generic[T]):
    """Single-port mode: route packets on one shared port to sessions by SSRC.

    :param quarantine: seconds an unbound SSRC keeps rejecting packets before it can be bound
        again (late packets of the old stream are dropped, not given to a new session).
    """

    def __init__(self, quarantine: float = DEFAULT_QUARANTINE) -> None:
        self.quarantine = quarantine
        self._sessions: dict[int, T] = {}
        self._cooling: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def bind(self, ssrc: int, session: T, now: float) -> None:
        """Route ``ssrc`` to ``session``.

        :raises PortPoolError: the SSRC is bound, or released less than ``quarantine`` ago.
        """
        if ssrc in self._sessions:
            raise PortPoolError(f"SSRC {ssrc} is already bound")
        until = self._cooling.get(ssrc)
        if until is not None:
            if now < until:
                raise PortPoolError(f"SSRC {ssrc} was released less than {self.quarantine} s ago")
            del self._cooling[ssrc]
        self._sessions[ssrc] = session

    def rebind(self, old: int, new: int, now: float) -> None:
        """Move a session to another SSRC (the device answered with its own ``y=``)."""
        if old == new:
            return
        session = self._sessions[old]
        self.bind(new, session, now)
        self.unbind(old, now)

    def unbind(self, ssrc: int, now: float) -> T | None:
        """Stop routing ``ssrc``; return the session it went to, if any."""
        session = self._sessions.pop(ssrc, None)
        if session is not None:
            self._cooling[ssrc] = now + self.quarantine
        # Forget expired quarantines so the table stays bounded.
        for key in [k for k, until in self._cooling.items() if until <= now]:
            del self._cooling[key]
        return session

    def lookup(self, ssrc: int) -> T | None:
        """The session for ``ssrc``, or None (foreign or quarantined: drop and count)."""
        return self._sessions.get(ssrc)
