"""Who a caller is: presented certificates, bearer tokens and SIP account bindings."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from authz import PrincipalKind, Scope
from certs import CertificateAuthority, init_ca
from gb28181.identity import Identity, IdentityError, fingerprint
from gb28181.store import ApiToken, CertBinding, Store, open_store
from gb28181.tokens import hash_token, new_token

ACCOUNT = "34020000002000000009"


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = await open_store("sqlite://:memory:")
    try:
        yield s
    finally:
        await s.close()


def ca(tmp_path: Path) -> CertificateAuthority:
    init_ca(tmp_path / "ca", "Test CA")
    return CertificateAuthority.open(tmp_path / "ca")


def issue(
    authority: CertificateAuthority, subject: str, level: int = 2, days: float = 30
) -> x509.Certificate:
    now = time.time()
    cert, _ = authority.issue(
        kind=PrincipalKind.PLATFORM,
        subject_id=subject,
        department="traffic",
        level=level,
        scope=Scope.everything(),
        roles=frozenset({"emergency-manager"}),
        not_before=now - 60,
        not_after=now + days * 86400,
    )
    return cert


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


async def token_for(store: Store, cert: x509.Certificate, **kw: float) -> str:
    token = new_token()
    sha = cert.fingerprint(hashes.SHA256()).hex()
    await store.add_api_token(
        ApiToken(hash_token(token), "p", sha, f"{cert.serial_number:X}", time.time(), **kw)
    )
    return token


async def test_certificate_gives_its_principal_and_revocation_applies_live(
    tmp_path: Path, store: Store
) -> None:
    authority = ca(tmp_path)
    cert = issue(authority, ACCOUNT, level=2)
    ident = Identity(store, tmp_path / "ca")
    p = ident.from_certificate(der(cert))
    assert p.id == ACCOUNT and p.level == 2 and p.department == "traffic"
    assert p.is_emergency_manager
    assert ident.from_certificate(cert.public_bytes(serialization.Encoding.PEM)) == p
    authority.revoke(cert.serial_number, x509.ReasonFlags.key_compromise)
    with pytest.raises(IdentityError, match="revoked"):
        ident.from_certificate(der(cert))


async def test_certificate_refusals_name_the_reason(tmp_path: Path, store: Store) -> None:
    ident = Identity(store, tmp_path / "ca")
    with pytest.raises(IdentityError, match="no certificate authority"):
        ident.from_certificate(b"x")
    authority = ca(tmp_path)
    other = Path(tmp_path / "other")
    init_ca(other, "Other CA")
    stranger = issue(CertificateAuthority.open(other), ACCOUNT)
    ident = Identity(store, tmp_path / "ca")
    with pytest.raises(IdentityError, match="not issued by a trusted CA"):
        ident.from_certificate(der(stranger))
    with pytest.raises(IdentityError, match="not a certificate"):
        ident.from_certificate(b"\x30\x03garbage")
    cert = issue(authority, ACCOUNT, days=1)
    with pytest.raises(IdentityError, match="expired"):
        ident.from_certificate(der(cert), now=time.time() + 3 * 86400)
    assert fingerprint(der(cert)) == cert.fingerprint(hashes.SHA256()).hex()


async def test_bearer_token_runs_as_its_certificate(tmp_path: Path, store: Store) -> None:
    authority = ca(tmp_path)
    cert = issue(authority, "admin", level=1)
    ident = Identity(store, tmp_path / "ca")
    token = await token_for(store, cert)
    p = await ident.from_bearer(token)
    assert p.id == "admin" and p.level == 1
    with pytest.raises(IdentityError, match="malformed"):
        await ident.from_bearer("nope")
    with pytest.raises(IdentityError, match="unknown"):
        await ident.from_bearer(new_token())
    expired = await token_for(store, cert, expires_at=time.time() - 1)
    with pytest.raises(IdentityError, match="expired"):
        await ident.from_bearer(expired)
    await store.revoke_api_tokens(at=time.time(), token_hash=hash_token(token))
    with pytest.raises(IdentityError, match="revoked"):
        await ident.from_bearer(token)
    fresh = await token_for(store, cert)
    authority.revoke(cert.serial_number, x509.ReasonFlags.unspecified)
    with pytest.raises(IdentityError, match="revoked"):
        await ident.from_bearer(fresh)


async def test_sip_account_by_tls_certificate_or_binding(tmp_path: Path, store: Store) -> None:
    authority = ca(tmp_path)
    cert = issue(authority, ACCOUNT)
    ident = Identity(store, tmp_path / "ca")
    assert (await ident.for_sip_account(ACCOUNT, der(cert))) is not None
    with pytest.raises(IdentityError, match=f"certificate is for {ACCOUNT}"):
        await ident.for_sip_account("34020000002000000001", der(cert))
    assert await ident.for_sip_account(ACCOUNT, None) is None
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    sha = cert.fingerprint(hashes.SHA256()).hex()
    await store.put_cert_binding(
        CertBinding(ACCOUNT, pem, sha, f"{cert.serial_number:X}", time.time())
    )
    bound = await ident.for_sip_account(ACCOUNT, None)
    assert bound is not None and bound.id == ACCOUNT and bound.level == 2
