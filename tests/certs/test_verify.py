"""Certificate verification: round trip per kind and every typed failure."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from authz import Action, ChannelInfo, Policy, PrincipalKind, Scope, Window
from certs import (
    PERMISSION_EXTENSION_OID,
    CertificateAuthority,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRevoked,
    MalformedCertificate,
    MissingPermissionExtension,
    RevocationUnknown,
    UnknownIssuer,
    WrongKeyUsage,
    generate_key,
    verify_certificate,
)

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
MID = T0 + 10 * DAY


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path_factory.mktemp("ca") / "ca", "City CA", now=T0)


def issue(ca: CertificateAuthority, kind: PrincipalKind = PrincipalKind.USER) -> x509.Certificate:
    cert, _ = ca.issue(
        kind=kind,
        subject_id="37020000002000000001",
        department="urban-construction",
        level=1,
        scope=Scope(prefixes=("3702",)),
        windows=(Window(6, 9), Window(12, 2)),
        roles=frozenset({"emergency-manager"}),
        not_before=T0,
        not_after=T0 + 30 * DAY,
    )
    return cert


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("kind", list(PrincipalKind))
def test_round_trip_per_kind(ca: CertificateAuthority, kind: PrincipalKind) -> None:
    cert = issue(ca, kind)
    identity = verify_certificate(pem(cert), [ca.certificate], [], MID)
    assert identity.subject_id == "37020000002000000001"
    assert (identity.kind, identity.level, identity.department) == (kind, 1, "urban-construction")
    assert identity.scope == Scope(prefixes=("3702",))
    assert identity.windows == (Window(6, 9), Window(12, 2))
    assert identity.serial == cert.serial_number
    assert identity.not_before == T0.timestamp()
    assert identity.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()
    principal = identity.to_principal()
    assert principal.is_emergency_manager and principal.level == 1
    assert principal.valid_to == (T0 + 30 * DAY).timestamp() + 1
    # The principal drives the policy: a shared camera inside the scope, in the snow season.
    cam = ChannelInfo("37020200001320000001", "traffic", shared=True)
    assert Policy().decide(principal, Action.VIEW, cam, MID.timestamp()).rule == "L1-shared"
    july = dt.datetime(2025, 7, 1, 4, tzinfo=dt.UTC).timestamp()
    assert Policy().decide(principal, Action.VIEW, cam, july).rule == "validity-expired"


def test_accepts_der_text_and_float_time(ca: CertificateAuthority) -> None:
    cert = issue(ca)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert verify_certificate(der, [ca.certificate], now=MID.timestamp()).level == 1
    assert verify_certificate(pem(cert).decode(), [ca.certificate], now=MID).level == 1
    assert verify_certificate(cert, [ca.certificate], now=MID).level == 1


def test_expired_and_not_yet_valid(ca: CertificateAuthority) -> None:
    cert = issue(ca)
    with pytest.raises(CertificateExpired):
        verify_certificate(pem(cert), [ca.certificate], [], T0 + 31 * DAY)
    with pytest.raises(CertificateNotYetValid):
        verify_certificate(pem(cert), [ca.certificate], [], T0 - DAY)
    # Bounds are inclusive (RFC 5280 §4.1.2.5).
    verify_certificate(pem(cert), [ca.certificate], [], T0 + 30 * DAY)
    verify_certificate(pem(cert), [ca.certificate], [], T0)


def test_expired_ca(ca: CertificateAuthority) -> None:
    cert = issue(ca)
    with pytest.raises(CertificateExpired, match="issuing CA"):
        verify_certificate(pem(cert), [ca.certificate], [], T0 + 4000 * DAY)


def test_revoked(tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "ca", "City CA", now=T0)
    cert = issue(ca)
    before = ca.crl(T0 + DAY)
    verify_certificate(pem(cert), [ca.certificate], [before], MID)
    ca.revoke(cert.serial_number, now=T0 + 2 * DAY)
    crl = ca.crl(T0 + 2 * DAY)
    with pytest.raises(CertificateRevoked):
        verify_certificate(pem(cert), [ca.certificate], [before, crl], MID)


def test_crl_from_another_ca_is_ignored(ca: CertificateAuthority, tmp_path: Path) -> None:
    foreign = CertificateAuthority.init(tmp_path / "f", "City CA", now=T0)
    cert = issue(ca)
    foreign.issue(
        kind=PrincipalKind.USER,
        subject_id="x",
        department="d",
        level=4,
        scope=Scope(),
        not_before=T0,
        not_after=T0 + DAY,
    )
    serial = foreign.issued()[0].serial_number
    foreign.revoke(serial, now=T0)
    # Same issuer name, wrong signature: cannot revoke nor vouch.
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(T0)
        .next_update(T0 + 30 * DAY)
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(T0)
            .build()
        )
        .sign(generate_key(), hashes.SHA256())
    )
    verify_certificate(pem(cert), [ca.certificate], [forged, foreign.crl(T0)], MID)
    with pytest.raises(RevocationUnknown):
        verify_certificate(pem(cert), [ca.certificate], [forged], MID, require_crl=True)


def test_require_crl(ca: CertificateAuthority) -> None:
    cert = issue(ca)
    with pytest.raises(RevocationUnknown):
        verify_certificate(pem(cert), [ca.certificate], [], MID, require_crl=True)
    stale = ca.crl(T0, next_update=DAY)
    with pytest.raises(RevocationUnknown):
        verify_certificate(pem(cert), [ca.certificate], [stale], MID, require_crl=True)
    fresh = ca.crl(MID - DAY)
    verify_certificate(pem(cert), [ca.certificate], [stale, fresh], MID, require_crl=True)


def test_foreign_ca(ca: CertificateAuthority, tmp_path: Path) -> None:
    # Same subject name, different key: the signature decides.
    foreign = CertificateAuthority.init(tmp_path / "foreign", "City CA", now=T0)
    cert = issue(foreign)
    with pytest.raises(UnknownIssuer):
        verify_certificate(pem(cert), [ca.certificate], [], MID)
    with pytest.raises(UnknownIssuer):
        verify_certificate(pem(cert), [], [], MID)
    assert verify_certificate(pem(cert), [ca.certificate, foreign.certificate], [], MID).level == 1


def test_garbage_is_malformed(ca: CertificateAuthority) -> None:
    for data in (
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"\x00" * (300 * 1024),
    ):
        with pytest.raises(MalformedCertificate):
            verify_certificate(data, [ca.certificate], [], MID)


def _raw_leaf(
    ca: CertificateAuthority,
    *,
    permission: bytes | None,
    eku: list[x509.ObjectIdentifier] | None = None,
    is_ca: bool = False,
    cn: bool = True,
) -> bytes:
    """A leaf signed by ``ca`` with hand-picked extensions (reads the CA key file)."""
    key = serialization.load_pem_private_key((ca.directory / "ca-key.pem").read_bytes(), None)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "370200")] if cn else [])
    leaf_key = generate_key()
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0)
        .not_valid_after(T0 + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
    )
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if permission is not None:
        b = b.add_extension(
            x509.UnrecognizedExtension(PERMISSION_EXTENSION_OID, permission), critical=False
        )
    cert = b.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return pem(cert)


GOOD_EXT = bytes.fromhex("30160201010201010201040c016430043000300030003000")


def test_missing_extension(ca: CertificateAuthority) -> None:
    data = _raw_leaf(ca, permission=None, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(MissingPermissionExtension):
        verify_certificate(data, [ca.certificate], [], MID)


def test_malformed_extension(ca: CertificateAuthority) -> None:
    data = _raw_leaf(ca, permission=GOOD_EXT[:-1], eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(MalformedCertificate, match="permission extension"):
        verify_certificate(data, [ca.certificate], [], MID)
    ok = _raw_leaf(ca, permission=GOOD_EXT, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    assert verify_certificate(ok, [ca.certificate], [], MID).level == 4


def test_missing_common_name(ca: CertificateAuthority) -> None:
    data = _raw_leaf(ca, permission=GOOD_EXT, eku=[ExtendedKeyUsageOID.CLIENT_AUTH], cn=False)
    with pytest.raises(MalformedCertificate, match="common name"):
        verify_certificate(data, [ca.certificate], [], MID)


@pytest.mark.parametrize(
    "kw",
    [
        {"eku": None},
        {"eku": [ExtendedKeyUsageOID.SERVER_AUTH]},
        {"eku": [ExtendedKeyUsageOID.CLIENT_AUTH], "is_ca": True},
    ],
)
def test_wrong_usage(ca: CertificateAuthority, kw: dict[str, object]) -> None:
    data = _raw_leaf(ca, permission=GOOD_EXT, **kw)  # type: ignore[arg-type]
    with pytest.raises(WrongKeyUsage):
        verify_certificate(data, [ca.certificate], [], MID)


def test_server_purpose_for_platforms(ca: CertificateAuthority) -> None:
    platform = issue(ca, PrincipalKind.PLATFORM)
    user = issue(ca)
    server = ExtendedKeyUsageOID.SERVER_AUTH
    assert verify_certificate(pem(platform), [ca.certificate], now=MID, purpose=server)
    with pytest.raises(WrongKeyUsage):
        verify_certificate(pem(user), [ca.certificate], now=MID, purpose=server)
