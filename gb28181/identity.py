"""Who a caller is: certificates, bearer tokens and certificate bindings -> Principal.

Three ways in, one answer (an :class:`authz.Principal` built from a permission certificate the
platform's CA issued, 第十九、二十条):

* **A presented certificate** (mutual TLS on HTTP or SIP): verified against the CA in
  ``[certs] ca_dir`` (chain, validity, key usage, permission extension) and the CA's revocation
  list, read live from the CA directory so that ``gb28181 certs revoke`` takes effect without a
  restart.
* **A bearer token** (``Authorization: Bearer gbt_...``): looked up by its SHA-256; the token
  names the certificate it was issued against, which must still be valid and unrevoked. The
  caller runs as that certificate's principal.
* **A SIP account on UDP/TCP** (most cameras): the certificate bound to the account on the
  platform (``gb28181 certs bind ACCOUNT CERTFILE``, table ``cert_bindings``), on top of
  digest. Over TLS the connection's own certificate wins and must name the account.

There are no default credentials: without a CA directory nothing authenticates.
Verification results are cached per certificate fingerprint; validity and revocation are
re-checked on every use.
"""

from __future__ import annotations

import logging
import os
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from authz import Principal
from certs import CertError, CertificateAuthority, CertVerifyError, verify_certificate
from certs import Identity as CertIdentity

from .store import ApiToken, CertBinding
from .tokens import hash_token, looks_like_token

__all__ = ["Identity", "IdentityError", "IdentityStore", "fingerprint"]

log = logging.getLogger("gb28181.identity")

#: Verified certificates kept (fingerprint -> identity); a bounded cache.
_CACHE_SIZE = 4096


class IdentityError(Exception):
    """The caller could not be authenticated (HTTP 401, SIP 403). ``reason`` is precise."""

    def __init__(self, reason: str, *, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class IdentityStore(Protocol):
    async def get_api_token(self, token_hash: str) -> ApiToken | None: ...

    async def get_cert_binding(self, account_id: str) -> CertBinding | None: ...


def fingerprint(cert_der: bytes) -> str:
    """Hex SHA-256 of a DER certificate (what tokens and bindings name)."""
    return x509.load_der_x509_certificate(cert_der).fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True, slots=True)
class _Verified:
    identity: CertIdentity
    principal: Principal


class Identity:
    """Authenticates callers against the platform's CA (see module docstring).

    :param store: tokens and certificate bindings.
    :param ca_dir: the CA directory (``[certs] ca_dir``).
    :param clock: epoch seconds.
    """

    def __init__(
        self,
        store: IdentityStore,
        ca_dir: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = _time.time,
    ) -> None:
        self.store = store
        self.ca_dir = Path(ca_dir)
        self.clock = clock
        self._ca: CertificateAuthority | None = None
        self._revoked: frozenset[int] = frozenset()
        self._revoked_mtime: float | None = None
        self._verified: dict[str, _Verified] = {}

    # -- the CA ----------------------------------------------------------------------------

    def _authority(self) -> CertificateAuthority:
        if self._ca is None:
            try:
                self._ca = CertificateAuthority.open(self.ca_dir)
            except CertError as exc:
                raise IdentityError(f"no certificate authority configured: {exc}") from None
        return self._ca

    def _revoked_serials(self, ca: CertificateAuthority) -> frozenset[int]:
        """Serials revoked by the CA, re-read whenever ``revoked.json`` changes."""
        path = ca.directory / "revoked.json"
        try:
            mtime = path.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            return frozenset()
        except OSError as exc:
            raise IdentityError(f"revocation state unreadable: {exc}") from None
        if mtime != self._revoked_mtime:
            try:
                self._revoked = frozenset(ca.revoked())
            except (OSError, ValueError, KeyError) as exc:
                # Fail closed: without the revocation list nobody is trusted.
                log.error("cannot read revoked certificates in %s: %s", ca.directory, exc)
                raise IdentityError("revocation state unreadable") from None
            self._revoked_mtime = mtime
        return self._revoked

    # -- certificates ----------------------------------------------------------------------

    def from_certificate(self, der: bytes, *, now: float | None = None) -> Principal:
        """The principal of a presented certificate (DER or PEM).

        :raises IdentityError: not issued by our CA, expired, not yet valid, revoked, wrong key
            usage, no or malformed permission extension (the reason says which).
        """
        at = self.clock() if now is None else now
        ca = self._authority()
        try:
            parsed = (
                x509.load_pem_x509_certificate(der)
                if der.lstrip().startswith(b"-----BEGIN")
                else x509.load_der_x509_certificate(der)
            )
        except ValueError as exc:
            raise IdentityError(f"not a certificate: {exc}") from None
        key = parsed.fingerprint(hashes.SHA256()).hex()
        return self._principal(parsed, key, ca, at)

    def _principal(
        self, cert: x509.Certificate, key: str, ca: CertificateAuthority, at: float
    ) -> Principal:
        verified = self._verified.get(key)
        if verified is None:
            try:
                identity = verify_certificate(cert, [ca.certificate], now=at)
            except CertVerifyError as exc:
                raise IdentityError(f"certificate refused: {exc}") from None
            verified = _Verified(identity, identity.to_principal())
            if len(self._verified) >= _CACHE_SIZE:
                self._verified.clear()
            self._verified[key] = verified
        identity = verified.identity
        if at < identity.not_before:
            raise IdentityError("certificate refused: not yet valid")
        if at > identity.not_after:
            raise IdentityError("certificate refused: expired")
        if cert.serial_number in self._revoked_serials(ca):
            raise IdentityError(f"certificate refused: serial {cert.serial_number:X} revoked")
        return verified.principal

    def _issued(self, ca: CertificateAuthority, serial_hex: str) -> x509.Certificate:
        try:
            return ca.find(int(serial_hex, 16))
        except (ValueError, CertError):
            raise IdentityError("the token's certificate is not known to the CA") from None

    # -- bearer tokens ---------------------------------------------------------------------

    async def from_bearer(self, token: str, *, now: float | None = None) -> Principal:
        """The principal a bearer token runs as.

        :raises IdentityError: malformed, unknown, revoked or expired token, or its
            certificate is no longer acceptable.
        """
        at = self.clock() if now is None else now
        if not looks_like_token(token):
            raise IdentityError("malformed bearer token")
        row = await self.store.get_api_token(hash_token(token))
        if row is None:
            raise IdentityError("unknown bearer token")
        if row.revoked_at is not None:
            raise IdentityError("bearer token revoked")
        if row.expires_at is not None and at >= row.expires_at:
            raise IdentityError("bearer token expired")
        ca = self._authority()
        cert = self._issued(ca, row.cert_serial)
        key = cert.fingerprint(hashes.SHA256()).hex()
        if key != row.cert_sha256:
            raise IdentityError("the token's certificate does not match its fingerprint")
        return self._principal(cert, key, ca, at)

    # -- SIP accounts ----------------------------------------------------------------------

    async def for_sip_account(
        self, account_id: str, tls_cert: bytes | None, *, now: float | None = None
    ) -> Principal | None:
        """The principal of a SIP account.

        With ``tls_cert`` (the TLS peer's certificate): its principal, whose ID must equal
        ``account_id``. Otherwise the certificate bound to the account, or ``None`` when the
        account has no binding.

        :raises IdentityError: the certificate is refused, or names another ID
            (``certificate is for X``).
        """
        if tls_cert is not None:
            principal = self.from_certificate(tls_cert, now=now)
            if principal.id != account_id:
                raise IdentityError(f"certificate is for {principal.id}", status=403)
            return principal
        binding = await self.store.get_cert_binding(account_id)
        if binding is None:
            return None
        principal = self.from_certificate(binding.cert_pem.encode("ascii"), now=now)
        if principal.id != account_id:
            raise IdentityError(f"certificate is for {principal.id}", status=403)
        return principal
