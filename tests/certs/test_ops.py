"""The functions behind ``gb28181 certs ...``: text syntax and the file workflow."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from authz import Scope, Window
from certs import (
    CaError,
    CertificateRevoked,
    format_scope,
    format_windows,
    init_ca,
    issue_to_files,
    parse_scope,
    parse_windows,
    revoke_serial,
    show_certificate,
    verify_certificate,
    write_crl,
)


def test_parse_scope() -> None:
    assert parse_scope("*").is_everything
    assert parse_scope("") == Scope()
    s = parse_scope("3702*, 37030000001320000001")
    assert s == Scope(prefixes=("3702",), channel_ids=frozenset({"37030000001320000001"}))
    assert format_scope(s) == "3702*,37030000001320000001"
    with pytest.raises(CaError):
        parse_scope("3702*,,x")


def test_parse_windows() -> None:
    ws = parse_windows("months=6-9;months=12-2,hours=22:00-05:59;flag=wartime")
    assert ws == (
        Window(6, 9),
        Window(12, 2, 22 * 60, 5 * 60 + 59),
        Window(flag="wartime"),
    )
    assert parse_windows(format_windows(ws)) == ws
    assert parse_windows("") == ()
    assert format_windows((Window(),)) == "months=1-12"


@pytest.mark.parametrize(
    "text", ["months=6", "months=a-b", "months=0-3", "hours=8-9", "colour=red", "months"]
)
def test_parse_windows_errors(text: str) -> None:
    with pytest.raises(CaError):
        parse_windows(text)


def test_workflow(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    out = init_ca(ca_dir, "Qingdao video CA")
    assert "created CA" in out and "Qingdao video CA" in out
    with pytest.raises(CaError):
        init_ca(tmp_path / "x", "y", algorithm="rsa")
    with pytest.raises(CaError):
        init_ca(tmp_path / "x", "y", algorithm="sm2")
    text = issue_to_files(
        ca_dir,
        kind="user",
        subject_id="37020000002000000001",
        department="traffic",
        level=2,
        scope="3702*",
        windows="months=6-9",
        roles="emergency-manager",
        out_dir=tmp_path / "out",
    )
    assert "level:       2" in text and "months=6-9" in text and "emergency-manager" in text
    cert_path = tmp_path / "out" / "37020000002000000001.cert.pem"
    key_path = tmp_path / "out" / "37020000002000000001.key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    with pytest.raises(CaError):
        issue_to_files(
            ca_dir,
            kind="user",
            subject_id="37020000002000000001",
            department="d",
            level=1,
            out_dir=tmp_path / "out",
        )
    with pytest.raises(CaError):
        issue_to_files(ca_dir, kind="robot", subject_id="z", department="d", level=1)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    shown = show_certificate(cert_path)
    assert f"{cert.serial_number:X}" in shown and "department:  traffic" in shown
    assert show_certificate(cert_path.read_bytes()) == shown

    assert "revoked serial" in revoke_serial(ca_dir, f"{cert.serial_number:X}", "key_compromise")
    with pytest.raises(CaError):
        revoke_serial(ca_dir, "zz")
    with pytest.raises(CaError):
        revoke_serial(ca_dir, "1", "no_such_reason")
    crl_path = tmp_path / "crl.pem"
    assert "1 revoked" in write_crl(ca_dir, crl_path)
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca-cert.pem").read_bytes())
    with pytest.raises(CertificateRevoked):
        verify_certificate(cert_path.read_bytes(), [ca_cert], [crl])


def test_show_without_or_with_bad_extension(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca", "CA")
    ca_pem = (tmp_path / "ca" / "ca-cert.pem").read_bytes()
    assert "permission:  (none)" in show_certificate(ca_pem)
    with pytest.raises(CaError):
        show_certificate(b"nope")
    with pytest.raises(CaError):
        show_certificate(tmp_path / "missing.pem")
