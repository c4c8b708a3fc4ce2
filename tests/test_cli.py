"""Command line: version, config errors exit 2 naming the key, check-config."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.audit import AuditChain, AuditRecord, from_jsonl, to_jsonl
from gb28181 import __version__
from gb28181.cli import main
from gb28181.store import ApiToken, open_store
from gb28181.tokens import hash_token

from .store.helpers import admin, postgres_server_url, with_query

ROOT = Path(__file__).resolve().parent.parent


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(ROOT / "conf" / "gb28181.toml")]) == 0
    assert "configuration OK" in capsys.readouterr().out


def test_serve_with_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[sip]\nid = "42"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "gb28181", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "sip.id" in proc.stderr


# -- certs ----------------------------------------------------------------------------------


def test_certs_issue_user_platform_and_device_then_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = str(tmp_path / "ca")
    out = str(tmp_path / "issued")
    assert main(["certs", "init-ca", "--ca-dir", ca, "--subject", "Test CA"]) == 0
    assert "created CA" in capsys.readouterr().out
    holders = [
        ("user", "alice", "1", "*"),
        ("platform", "37020000002000000001", "2", "3702*"),
        ("device", "37020000001320000001", "4", "37020000001320000001"),
    ]
    for kind, holder, level, scope in holders:
        args = ["certs", "issue", "--ca-dir", ca, "--out-dir", out, "--kind", kind]
        args += ["--id", holder, "--department", "公安", "--level", level, "--scope", scope]
        assert main(args) == 0, kind
        assert f"kind:        {kind}" in capsys.readouterr().out
        assert main(["certs", "show", f"{out}/{holder}.cert.pem"]) == 0
        shown = capsys.readouterr().out
        assert f"level:       {level}" in shown and "department:  公安" in shown
        assert f"scope:       {scope}" in shown


def test_certs_revoke_and_crl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = str(tmp_path / "ca")
    assert main(["certs", "init-ca", "--ca-dir", ca]) == 0
    capsys.readouterr()
    args = ["certs", "issue", "--ca-dir", ca, "--out-dir", str(tmp_path), "--id", "bob"]
    assert main([*args, "--department", "城管", "--level", "3", "--windows", "months=6-9"]) == 0
    serial = next(
        line.split()[1]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("serial")
    )
    assert main(["certs", "revoke", "--ca-dir", ca, serial, "--reason", "key_compromise"]) == 0
    assert "revoked serial" in capsys.readouterr().out
    crl = tmp_path / "ca.crl.pem"
    assert main(["certs", "crl", "--ca-dir", ca, "--out", str(crl)]) == 0
    assert "1 revoked" in capsys.readouterr().out
    assert crl.read_bytes().startswith(b"-----BEGIN X509 CRL-----")


def test_certs_errors_exit_1_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nowhere")
    args = ["certs", "issue", "--ca-dir", missing, "--id", "x", "--department", "d"]
    assert main([*args, "--level", "1"]) == 1
    assert "cannot open CA" in capsys.readouterr().err
    ca = str(tmp_path / "ca")
    assert main(["certs", "init-ca", "--ca-dir", ca]) == 0
    assert main(["certs", "init-ca", "--ca-dir", ca]) == 1
    assert "already holds a CA" in capsys.readouterr().err
    bad_kind = ["certs", "issue", "--ca-dir", ca, "--id", "x", "--department", "d", "--level"]
    assert main([*bad_kind, "1", "--kind", "robot"]) == 1
    assert "unknown kind" in capsys.readouterr().err
    assert main([*bad_kind, "9", "--out-dir", str(tmp_path)]) == 1
    assert main([*bad_kind, "1", "--windows", "moons=1-2"]) == 1
    assert main(["certs", "revoke", "--ca-dir", ca, "not-hex"]) == 1
    assert main(["certs", "show", str(tmp_path / "absent.pem")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_certs_usage_errors_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["certs"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["certs", "issue", "--ca-dir", str(tmp_path)])
    assert info.value.code == 2


# -- audit ----------------------------------------------------------------------------------

AUDIT_ROWS = 6


def _audit_records(key: bytes | None = None) -> list[AuditRecord]:
    chain = AuditChain(key=key)
    return [
        chain.append(
            time=1_700_000_000.25 + i,
            principal_id=f"user{i}",
            department="公安",
            level=1 + i % 4,
            action="view",
            target="34020000001320000001",
            outcome="deny" if i % 2 else "allow",
            rule=f"level-{1 + i % 4}",
            source="192.0.2.1:5060",
            extra={"i": i},
        )
        for i in range(AUDIT_ROWS)
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def audit_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(store URL, audit_log table name)`` of an empty database of each dialect."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gb28181.db'}", "audit_log"
        return
    server = postgres_server_url()
    schema = f"cli_{secrets.token_hex(6)}"
    asyncio.run(admin(server, f'CREATE SCHEMA "{schema}"'))
    try:
        yield with_query(server, search_path=schema), f'"{schema}".audit_log'
    finally:
        asyncio.run(admin(server, f'DROP SCHEMA "{schema}" CASCADE'))


def _fill(url: str, records: list[AuditRecord]) -> None:
    async def fill() -> None:
        async with await open_store(url) as store:
            await store.append_audit(records)

    asyncio.run(fill())


def _sql(url: str, statements: list[str]) -> None:
    if url.startswith("sqlite:"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    for statement in statements:
        asyncio.run(admin(url.split("?")[0], statement))


def _verify(url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["audit", "verify", "--store-url", url, *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


TAMPERING = {
    "edited": (["UPDATE {t} SET outcome = 'forged' WHERE seq = 3"], 3, "altered"),
    "deleted": (["DELETE FROM {t} WHERE seq = 3"], 4, "deleted"),
    "reordered": (
        [
            "UPDATE {t} SET seq = -2 WHERE seq = 2",
            "UPDATE {t} SET seq = 2 WHERE seq = 3",
            "UPDATE {t} SET seq = 3 WHERE seq = -2",
        ],
        2,
        "altered",
    ),
    "extra rewritten": (["UPDATE {t} SET extra = '{{\"i\":99}}' WHERE seq = 5"], 5, "altered"),
    "relinked": (["UPDATE {t} SET prev_hash = hash WHERE seq = 6"], 6, "altered"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_audit_verify_passes_then_names_the_tampered_seq(
    audit_db: tuple[str, str], case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url, table = audit_db
    _fill(url, _audit_records())
    code, text = _verify(url, capsys)
    assert code == 0, text
    assert f"audit trail OK: {AUDIT_ROWS} records" in text
    statements, seq, why = TAMPERING[case]
    _sql(url, [s.format(t=table) for s in statements])
    code, text = _verify(url, capsys)
    assert code == 1
    assert f"BROKEN at seq {seq}:" in text and why in text


def test_audit_verify_with_a_key_and_an_anchor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'gb28181.db'}"
    assert _verify(url, capsys) == (0, f"audit trail OK: 0 records, head seq 0 hash {'0' * 64}\n")
    key_file = tmp_path / "audit.key"
    key_file.write_bytes(b"s" * 32)
    key_file.chmod(0o600)
    records = _audit_records(key=b"s" * 32)
    _fill(url, records)
    assert _verify(url, capsys, "--key-file", str(key_file))[0] == 0
    code, text = _verify(url, capsys)  # without the key, nothing matches
    assert code == 1 and "BROKEN at seq 1:" in text
    anchor = f"{records[-1].seq}:{records[-1].hash}"
    assert _verify(url, capsys, "--key-file", str(key_file), "--anchor", anchor)[0] == 0
    _sql(url, ["DELETE FROM audit_log WHERE seq = 6"])
    code, text = _verify(url, capsys, "--key-file", str(key_file), "--anchor", anchor)
    assert code == 1 and "BROKEN at seq 6:" in text and "anchor" in text
    key_file.chmod(0o644)
    with pytest.raises(SystemExit) as info:
        _verify(url, capsys, "--key-file", str(key_file))
    assert info.value.code == 2
    assert "audit.key_file" in capsys.readouterr().err


def test_audit_export_writes_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'gb28181.db'}"
    records = _audit_records()
    _fill(url, records)
    out = tmp_path / "audit.jsonl"
    assert main(["audit", "export", "--store-url", url, "--out", str(out)]) == 0
    assert f"exported {AUDIT_ROWS} audit records" in capsys.readouterr().err
    assert from_jsonl(out.read_text(encoding="utf-8")) == records
    assert main(["audit", "export", "--store-url", url, "--out", "-"]) == 0
    assert capsys.readouterr().out == to_jsonl(records)
    bad = ["audit", "export", "--store-url", url, "--out", str(tmp_path / "no" / "x.jsonl")]
    assert main(bad) == 1


def test_audit_usage_and_store_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["audit", "verify", "--anchor", "12"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["audit", "verify", "--config", str(tmp_path / "missing.toml")])
    assert info.value.code == 2
    unreachable = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    assert main(["audit", "verify", "--store-url", unreachable]) == 1
    assert "gb28181: audit:" in capsys.readouterr().err


# -- admin ----------------------------------------------------------------------------------


def test_admin_create_issues_a_level_1_certificate_and_a_hashed_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca, out = str(tmp_path / "ca"), str(tmp_path / "admin")
    url = f"sqlite:///{tmp_path / 'gb28181.db'}"
    assert main(["certs", "init-ca", "--ca-dir", ca]) == 0
    capsys.readouterr()
    args = ["admin", "create", "--name", "root", "--department", "应急管理局", "--ca-dir", ca]
    assert main([*args, "--out-dir", out, "--store-url", url]) == 0
    printed = capsys.readouterr().out
    assert "level:       1" in printed and "scope:       *" in printed
    token = printed.split("bearer token (shown once, store it safely): ")[1].strip()
    assert token.startswith("gbt_")

    async def stored() -> tuple[ApiToken | None, list[AuditRecord], int]:
        async with await open_store(url) as store:
            found = await store.get_api_token(hash_token(token))
            trail = await store.load_audit()
            revoked = await store.revoke_api_tokens(
                at=5.0, cert_serial=found.cert_serial if found else ""
            )
            return found, trail, revoked

    found, trail, revoked = asyncio.run(stored())
    assert found is not None and found.principal_id == "root" and revoked == 1
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        (stored_hashes,) = conn.execute(
            "SELECT group_concat(token_hash) FROM api_tokens"
        ).fetchone()
    assert stored_hashes == hash_token(token)
    assert [r.action for r in trail] == ["cert.issue", "token.issue"]
    assert main(["audit", "verify", "--store-url", url]) == 0
    # The files exist now: a second create under the same name is refused.
    assert main([*args, "--out-dir", out, "--store-url", url]) == 1
    assert "already exists" in capsys.readouterr().err


def test_certs_operations_are_audited_when_given_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = str(tmp_path / "ca")
    url = f"sqlite:///{tmp_path / 'gb28181.db'}"
    common = ["--ca-dir", ca, "--store-url", url]
    assert main(["certs", "init-ca", *common]) == 0
    capsys.readouterr()
    issue = ["certs", "issue", *common, "--out-dir", str(tmp_path), "--id", "dev1"]
    assert main([*issue, "--department", "交警", "--level", "4", "--kind", "device"]) == 0
    serial = capsys.readouterr().out.split("serial:      ")[1].split()[0]
    assert main(["certs", "revoke", *common, serial]) == 0
    assert main(["certs", "crl", *common, "--out", str(tmp_path / "crl.pem")]) == 0

    async def trail() -> list[AuditRecord]:
        async with await open_store(url) as store:
            return await store.load_audit()

    records = asyncio.run(trail())
    assert [r.action for r in records] == ["ca.init", "cert.issue", "cert.revoke", "crl.write"]
    assert records[1].extra["serial"] == serial and records[2].target == serial
    assert main(["audit", "verify", "--store-url", url]) == 0
    (tmp_path / "plain").write_text("not a directory")
    bad_store = ["--store-url", f"sqlite:///{tmp_path / 'plain' / 'gb28181.db'}"]
    assert main(["certs", "crl", "--ca-dir", ca, *bad_store, "--out", str(tmp_path / "c")]) == 1
    assert "audit record failed" in capsys.readouterr().err


def test_certs_token_bind_and_revoke_with_its_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gb28181.identity import Identity, IdentityError

    ca, out, url = tmp_path / "ca", tmp_path / "out", f"sqlite:///{tmp_path / 'gb.db'}"
    store_args = ["--ca-dir", str(ca), "--store-url", url]
    assert main(["certs", "init-ca", "--ca-dir", str(ca)]) == 0
    cam = "34020000001320000007"
    for subject in ("bob", cam):
        code = main(["certs", "issue", "--ca-dir", str(ca), "--out-dir", str(out),
                     "--id", subject, "--department", "traffic", "--level", "3"])  # fmt: skip
        assert code == 0
    capsys.readouterr()
    assert main(["certs", "token", str(out / "bob.cert.pem"), *store_args]) == 0
    token = capsys.readouterr().out.rsplit(" ", 1)[-1].strip()
    assert main(["certs", "bind", "34020000001320000008", str(out / f"{cam}.cert.pem"),
                 *store_args]) == 1  # fmt: skip
    assert f"certificate is for {cam}" in capsys.readouterr().err
    assert main(["certs", "bind", cam, str(out / f"{cam}.cert.pem"), *store_args]) == 0

    async def check(revoked: bool) -> None:
        async with await open_store(url) as store:
            identity = Identity(store, ca)
            binding = await store.get_cert_binding(cam)
            assert binding is not None and binding.account_id == cam
            if revoked:
                with pytest.raises(IdentityError, match="revoked"):
                    await identity.from_bearer(token)
            else:
                principal = await identity.from_bearer(token)
                assert principal.id == "bob" and principal.level == 3
                bound = await identity.for_sip_account(cam, None)
                assert bound is not None and bound.id == cam

    asyncio.run(check(False))
    from cryptography import x509

    serial = x509.load_pem_x509_certificate((out / "bob.cert.pem").read_bytes()).serial_number
    capsys.readouterr()
    assert main(["certs", "revoke", f"{serial:X}", *store_args]) == 0
    assert "revoked 1 bearer token(s)" in capsys.readouterr().out
    asyncio.run(check(True))
