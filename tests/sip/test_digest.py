"""Tests for gb28181.sip._digest: RFC vectors, captured headers, verifier, fuzzing."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gb28181.sip._digest import (
    MAX_HEADER_LENGTH,
    SUPPORTED_ALGORITHMS,
    AuthResult,
    DigestChallenge,
    DigestCredentials,
    DigestError,
    DigestVerifier,
    NonceIssuer,
    NonceStatus,
    _scan_params,
    _split_params,
    build_authorization,
    compute_response,
)

WIRE = Path(__file__).resolve().parent.parent / "fixtures" / "sip-wire"

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "3402000000"
DEVICE = "34020000001320000001"
PASSWORD = "12345678"
URI = "sip:34020000002000000001@3402000000"
T0 = 1_700_000_000.0


def counter_entropy() -> Callable[[int], bytes]:
    """Deterministic stand-in for os.urandom: 0, 1, 2... as big-endian bytes."""
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def make_verifier(**kwargs: object) -> DigestVerifier:
    issuer = NonceIssuer(SECRET, 300.0, entropy=counter_entropy())
    return DigestVerifier(issuer, REALM, **kwargs)  # type: ignore[arg-type]


def header_of(name: str, filename: str) -> str:
    """The value of one header in a captured message (header block only)."""
    head = (WIRE / filename).read_bytes().split(b"\r\n\r\n", 1)[0]
    for line in head.decode("ascii").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    raise AssertionError(f"{name} not in {filename}")


def answer(
    verifier: DigestVerifier,
    now: float = T0,
    *,
    qop: bool = True,
    algorithm: str = "MD5",
    password: str = PASSWORD,
    nc: int = 1,
) -> DigestCredentials:
    challenge = verifier.challenge(now, algorithm=algorithm, qop=qop)
    return build_authorization(challenge, "REGISTER", URI, DEVICE, password, "0a4f113b", nc)


def check(verifier: DigestVerifier, creds: DigestCredentials, now: float = T0 + 1) -> AuthResult:
    return verifier.verify(creds, "REGISTER", PASSWORD, now, expected_user=DEVICE)


# -- RFC vectors -------------------------------------------------------------

RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa", realm="testrealm@host.com", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
    'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
    'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_rfc2617_worked_example() -> None:
    challenge = DigestChallenge.parse(RFC2617_CHALLENGE)
    assert challenge == DigestChallenge(
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        algorithm="MD5",
        qop=("auth", "auth-int"),
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
    )
    creds = DigestCredentials.parse(RFC2617_AUTHORIZATION)
    assert creds.username == "Mufasa"
    assert creds.qop == "auth"
    assert creds.nc == "00000001"
    assert creds.cnonce == "0a4f113b"
    assert creds.opaque == "5ccc069c403ebaf9f0171e9517f40e41"
    assert creds.algorithm == "MD5"
    expected = "6629fae49393a05397450978507c4ef1"
    assert creds.response == expected
    assert (
        compute_response(
            "MD5",
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "auth",
        )
        == expected
    )
    built = build_authorization(
        challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", "0a4f113b"
    )
    assert built == creds
    assert DigestCredentials.parse(str(built)) == creds


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_example(algorithm: str, expected: str) -> None:
    header = (
        f'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f"algorithm={algorithm}, "
        f'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
        f'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
        f'response="{expected}", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    creds = DigestCredentials.parse(header)
    assert creds.algorithm == algorithm
    assert creds.nonce is not None and creds.nc is not None and creds.cnonce is not None
    response = compute_response(
        creds.algorithm,
        "Mufasa",
        "http-auth@example.org",
        "Circle of Life",
        "GET",
        "/dir/index.html",
        creds.nonce,
        creds.nc,
        creds.cnonce,
        creds.qop,
    )
    assert response == expected == creds.response


# -- captured headers ----------------------------------------------------------


def test_hikvision_register_auth_capture() -> None:
    creds = DigestCredentials.parse(header_of("Authorization", "hikvision_register-auth_1.sip"))
    assert creds == DigestCredentials(
        username="34020000001320000088",
        realm="3402000000",
        nonce="9485904448344456af5449b51759016e",
        uri="sip:34020000002000000001@3402000000",
        response="b1cfb3f036fbcf7d13b8ee3bbff89906",
        algorithm="MD5",
    )
    # The camera kept its factory password; the RFC 2069 form (no qop) checks out.
    assert (
        compute_response(
            "MD5",
            "34020000001320000088",
            "3402000000",
            "12345678",
            "REGISTER",
            "sip:34020000002000000001@3402000000",
            "9485904448344456af5449b51759016e",
        )
        == creds.response
    )
    # Its nonce came from the Qt server, not from us: rejected before hashing.
    verifier = make_verifier(opaque=False)
    result = verifier.verify(
        creds, "REGISTER", "12345678", T0, expected_user="34020000001320000088"
    )
    assert result is AuthResult.BAD_NONCE


def test_dahua_register_auth_capture() -> None:
    creds = DigestCredentials.parse(header_of("Authorization", "dahua_register-auth_1.sip"))
    assert creds.username == "34020000001320000001"
    assert creds.realm == "3402000000"
    assert creds.nonce == "1560147531-29bec85c6ab25d6f81ee6533582797ec"
    assert creds.uri == "sip:34020000002000000001@192.168.28.10:5080"
    assert creds.response == "b2adfbe6d392085b930ad26105668f27"
    assert creds.algorithm == "MD5"
    assert creds.qop is None and creds.nc is None and creds.cnonce is None
    assert DigestCredentials.parse(str(creds)) == creds


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        (
            "wvp_401-register_1.sip",
            DigestChallenge("81000000", "4923a23887ab41862f3509ab36b4351b", "MD5", ("auth",)),
        ),
        (
            "feiyangqingyun_401-register_1.sip",
            DigestChallenge("3402000000", "9485904448344456af5449b51759016e", "MD5"),
        ),
        ("exosip_401-register_1.sip", DigestChallenge("34020000", "1715926053", "MD5")),
        (
            "easygbs_401-register_1.sip",
            DigestChallenge("3402000000", "17cdd3182fd1fa60cc84dae13bac3479"),
        ),
        (
            "sdk28181_401-register_1.sip",
            DigestChallenge("3402000000", "1560147531-29bec85c6ab25d6f81ee6533582797ec"),
        ),
    ],
)
def test_captured_challenges(filename: str, expected: DigestChallenge) -> None:
    challenge = DigestChallenge.parse(header_of("WWW-Authenticate", filename))
    assert challenge == expected
    assert DigestChallenge.parse(str(challenge)) == challenge


def test_answer_captured_wvp_challenge() -> None:
    challenge = DigestChallenge.parse(header_of("WWW-Authenticate", "wvp_401-register_1.sip"))
    creds = build_authorization(
        challenge, "REGISTER", "sip:81000000002000000001@81000000", DEVICE, "pw", "c1"
    )
    assert creds.qop == "auth" and creds.nc == "00000001" and creds.cnonce == "c1"
    assert creds.realm == "81000000" and creds.opaque is None


# -- header syntax -------------------------------------------------------------


def test_challenge_str() -> None:
    challenge = DigestChallenge("3402000000", "abc", "MD5", ("auth",), "xyz", stale=True)
    assert str(challenge) == (
        'Digest realm="3402000000", nonce="abc", algorithm=MD5, qop="auth", '
        'opaque="xyz", stale=true'
    )
    assert str(DigestChallenge("r", "n")) == 'Digest realm="r", nonce="n", algorithm=MD5'


def test_credentials_str_quotes_and_escapes() -> None:
    creds = DigestCredentials(username='a"b\\c', realm="r", algorithm="odd value")
    text = str(creds)
    assert text == 'Digest username="a\\"b\\\\c", realm="r", algorithm="odd value"'
    assert DigestCredentials.parse(text) == creds


@pytest.mark.parametrize(
    "header",
    [
        # no spaces at all (WVP, eXosip style)
        'Digest username="u",realm="r",nonce="n",uri="sip:a@b",response="f",qop=auth,nc=1,'
        'cnonce="c"',
        # spaces around "=" and after commas, upper-case names and scheme
        'DIGEST USERNAME = "u" ,  Realm= "r", NONCE ="n", Uri="sip:a@b", response="f", '
        "QOP=auth, NC=1, CNONCE=c",
        # quotes around tokens, none around strings, unknown parameters
        'digest username=u, realm="r", nonce=n, uri=sip:a@b, response=f, qop="auth", '
        'nc="1", cnonce="c", userhash=false, foo="bar, baz"',
        # tab after the scheme, empty list elements and a trailing comma
        'Digest\tusername="u",, realm="r", nonce="n", uri="sip:a@b", response="f", '
        'qop=auth, nc=1, cnonce="c",',
    ],
)
def test_credentials_tolerant_parsing(header: str) -> None:
    creds = DigestCredentials.parse(header)
    assert creds == DigestCredentials(
        username="u",
        realm="r",
        nonce="n",
        uri="sip:a@b",
        response="f",
        qop="auth",
        nc="1",
        cnonce="c",
    )


def test_quoted_values_may_hold_commas_equals_and_escapes() -> None:
    creds = DigestCredentials.parse(
        'Digest username="a\\"b", uri="sip:x,y=z@h;p=1", realm="\\\\r", nonce="n,"'
    )
    assert creds.username == 'a"b'
    assert creds.uri == "sip:x,y=z@h;p=1"
    assert creds.realm == "\\r"
    assert creds.nonce == "n,"


def test_algorithm_case_and_unknown_algorithm() -> None:
    assert DigestChallenge.parse('Digest realm="r", nonce="n", algorithm=md5-SESS').algorithm == (
        "MD5-sess"
    )
    assert DigestCredentials.parse('Digest username="u", algorithm=sha-256').algorithm == "SHA-256"
    assert DigestCredentials.parse('Digest username="u", algorithm=SHA-512').algorithm == "SHA-512"


def test_challenge_stale_and_qop_list() -> None:
    challenge = DigestChallenge.parse(
        'Digest realm="r", nonce="n", qop=" AUTH , auth-int ,", stale=TRUE'
    )
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.stale
    assert not DigestChallenge.parse('Digest realm="r", nonce="n", stale=false').stale


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Digest",
        "Digest ",
        "Digest , ,",
        'Basic username="u"',
        'Digestusername="u"',
        'Digest username="u',
        'Digest username="u\\"',
        'Digest username="u" x, realm="r"',
        'Digest username="u"x',
        'Digest username=u"x"',
        'Digest username="u", username="v"',
        'Digest USERNAME="u", username="v"',
        'Digest username="\\u", username="v"',
        'Digest username="u", realm',
        'Digest user name="u"',
        'Digest ="u"',
        'Digest a\\b="u"',
        'Digest username="u\r\n", realm="r"',
        'Digest username="u\x00"',
        "Digest username=" + "x" * MAX_HEADER_LENGTH,
    ],
)
def test_malformed_headers_raise_digest_error(header: str) -> None:
    with pytest.raises(DigestError):
        DigestCredentials.parse(header)
    with pytest.raises(DigestError):
        DigestChallenge.parse(header)


@pytest.mark.parametrize(
    "header", ['Digest nonce="n"', 'Digest realm="r"', 'Digest realm="r", nonce=']
)
def test_challenge_needs_realm_and_nonce(header: str) -> None:
    if header.endswith("nonce="):
        assert DigestChallenge.parse(header).nonce == ""
        return
    with pytest.raises(DigestError, match="challenge without"):
        DigestChallenge.parse(header)


def test_credentials_with_missing_fields_still_parse() -> None:
    assert DigestCredentials.parse('Digest realm="r"') == DigestCredentials(realm="r")


# -- compute_response / build_authorization -------------------------------------


def test_compute_response_errors() -> None:
    args = ("u", "r", "p", "REGISTER", "sip:a@b", "n")
    with pytest.raises(DigestError, match="unsupported digest algorithm"):
        compute_response("SHA-512", *args)
    with pytest.raises(DigestError, match="unsupported qop"):
        compute_response("MD5", *args, "00000001", "c", "auth-int")
    with pytest.raises(DigestError, match="need nc and cnonce"):
        compute_response("MD5", *args, None, "c", "auth")
    with pytest.raises(DigestError, match="need nc and cnonce"):
        compute_response("MD5-sess", *args)


def test_sess_variant_differs_and_uses_cnonce() -> None:
    args = ("u", "r", "p", "REGISTER", "sip:a@b", "n")
    plain = compute_response("MD5", *args)
    sess1 = compute_response("MD5-sess", *args, None, "c1")
    sess2 = compute_response("md5-sess", *args, None, "c2")
    assert len({plain, sess1, sess2}) == 3
    assert len(compute_response("SHA-256-sess", *args, "00000001", "c", "auth")) == 64


def test_build_authorization_errors() -> None:
    with pytest.raises(DigestError, match="unsupported digest algorithm"):
        build_authorization(DigestChallenge("r", "n", "SHA-512"), "REGISTER", URI, "u", "p", "c")
    with pytest.raises(DigestError, match="no supported qop"):
        build_authorization(
            DigestChallenge("r", "n", qop=("auth-int",)), "REGISTER", URI, "u", "p", "c"
        )
    for nc in (0, 2**32):
        with pytest.raises(DigestError, match="nonce count"):
            build_authorization(DigestChallenge("r", "n"), "REGISTER", URI, "u", "p", "c", nc)


def test_build_authorization_without_qop() -> None:
    creds = build_authorization(DigestChallenge("r", "n"), "REGISTER", URI, "u", "p", "c", 5)
    assert creds.qop is None and creds.nc is None and creds.cnonce is None
    sess = build_authorization(
        DigestChallenge("r", "n", "MD5-sess"), "REGISTER", URI, "u", "p", "c"
    )
    assert sess.qop is None and sess.nc is None and sess.cnonce == "c"
    counted = build_authorization(
        DigestChallenge("r", "n", qop=("auth",)), "REGISTER", URI, "u", "p", "c", 0x1A
    )
    assert counted.nc == "0000001a"


# -- nonces --------------------------------------------------------------------


def test_nonce_lifecycle() -> None:
    issuer = NonceIssuer(SECRET, 300.0, entropy=counter_entropy())
    nonce = issuer.issue(T0)
    assert len(nonce) == 40 and nonce == nonce.lower()
    assert issuer.check(nonce, T0) is NonceStatus.VALID
    assert issuer.check(nonce, T0 + 300) is NonceStatus.VALID
    assert issuer.check(nonce, T0 + 301) is NonceStatus.STALE
    assert issuer.check(nonce, T0 - 5) is NonceStatus.VALID  # within max_skew
    assert issuer.check(nonce, T0 - 6) is NonceStatus.STALE  # from the "future"
    assert issuer.inspect(nonce, T0) == (NonceStatus.VALID, int(T0))
    assert issuer.issue(T0) != nonce  # random part differs


def test_nonce_shared_between_processes() -> None:
    nonce = NonceIssuer(SECRET, 60.0).issue(T0)
    assert NonceIssuer(SECRET, 60.0).check(nonce, T0 + 10) is NonceStatus.VALID
    assert NonceIssuer(b"another secret!!", 60.0).check(nonce, T0) is NonceStatus.INVALID
    long_secret = SECRET * 4  # longer than a BLAKE2s key: hashed down, still works
    long_nonce = NonceIssuer(long_secret, 60.0).issue(T0)
    assert NonceIssuer(long_secret, 60.0).check(long_nonce, T0) is NonceStatus.VALID


def test_forged_and_garbled_nonces() -> None:
    issuer = NonceIssuer(SECRET, 300.0)
    nonce = issuer.issue(T0)
    flipped = nonce[:-1] + ("0" if nonce[-1] != "0" else "1")
    retimed = "00" + nonce[2:]
    for bad in (
        flipped,
        retimed,
        nonce.upper(),
        nonce[:-2],
        nonce + "00",
        "zz" + nonce[2:],
        " " + nonce[1:],
        "",
        "1560147531-29bec85c6ab25d6f81ee6533582797ec",
    ):
        assert issuer.check(bad, T0) is NonceStatus.INVALID, bad


def test_nonce_issuer_arguments() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        NonceIssuer(b"short", 60.0)
    with pytest.raises(ValueError, match="positive"):
        NonceIssuer(SECRET, 0)
    issuer = NonceIssuer(SECRET, 60.0)
    for now in (-1.0, 2.0**32):
        with pytest.raises(ValueError, match="out of range"):
            issuer.issue(now)
    assert issuer.opaque == NonceIssuer(SECRET, 1.0).opaque != NonceIssuer(SECRET * 2, 1).opaque


# -- verifier ------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", sorted(SUPPORTED_ALGORITHMS))
@pytest.mark.parametrize("qop", [True, False])
def test_round_trip_every_algorithm_and_qop(algorithm: str, qop: bool) -> None:
    verifier = make_verifier()
    creds = answer(verifier, algorithm=algorithm, qop=qop)
    assert creds.algorithm == algorithm
    assert (creds.qop == "auth") is qop
    wire = DigestCredentials.parse(str(creds))
    assert wire == creds
    assert check(verifier, wire) is AuthResult.OK
    wrong = verifier.verify(wire, "REGISTER", "wrong", T0 + 1, expected_user=DEVICE)
    assert wrong is AuthResult.BAD_RESPONSE


def test_challenge_defaults_and_options() -> None:
    verifier = make_verifier()
    challenge = verifier.challenge(T0)
    assert challenge.realm == REALM
    assert challenge.algorithm == "MD5"
    assert challenge.qop == ("auth",)
    assert challenge.opaque == verifier.opaque is not None
    assert not challenge.stale
    assert verifier.issuer.check(challenge.nonce, T0) is NonceStatus.VALID
    other = verifier.challenge(T0, stale=True, algorithm="sha-256", qop=False)
    assert (other.stale, other.algorithm, other.qop) == (True, "SHA-256", ())
    with pytest.raises(ValueError, match="not enabled"):
        verifier.challenge(T0, algorithm="SHA-512")
    md5_only = make_verifier(algorithms=["md5"])
    with pytest.raises(ValueError, match="not enabled"):
        md5_only.challenge(T0, algorithm="SHA-256")


def test_verifier_arguments() -> None:
    with pytest.raises(ValueError, match="unsupported digest algorithms"):
        make_verifier(algorithms=["MD5", "SHA-512"])
    with pytest.raises(ValueError, match="max_tracked_nonces"):
        make_verifier(max_tracked_nonces=0)


def test_stale_nonce() -> None:
    verifier = make_verifier()
    creds = answer(verifier)
    assert check(verifier, creds, T0 + 301) is AuthResult.STALE
    late_wrong = verifier.verify(creds, "REGISTER", "nope", T0 + 301, expected_user=DEVICE)
    assert late_wrong is AuthResult.BAD_RESPONSE  # stale=true only for the right password
    # A nonce stamped by a process whose clock runs ahead: 5 s of skew are tolerated.
    ahead = answer(verifier, T0 + 100)
    assert check(verifier, ahead, T0 + 96) is AuthResult.OK
    too_far_ahead = answer(verifier, T0 + 100)
    assert check(verifier, too_far_ahead, T0 + 94) is AuthResult.STALE


def test_forged_nonce_is_bad_nonce() -> None:
    verifier = make_verifier()
    creds = answer(verifier)
    assert creds.nonce is not None
    forged_nonce = ("0" if creds.nonce[0] != "0" else "1") + creds.nonce[1:]
    challenge = DigestChallenge(REALM, forged_nonce, qop=("auth",), opaque=verifier.opaque)
    forged = build_authorization(challenge, "REGISTER", URI, DEVICE, PASSWORD, "c")
    assert check(verifier, forged) is AuthResult.BAD_NONCE


def test_replayed_nc() -> None:
    verifier = make_verifier()
    challenge = verifier.challenge(T0)

    def with_nc(nc: int) -> DigestCredentials:
        return build_authorization(challenge, "REGISTER", URI, DEVICE, PASSWORD, "c", nc)

    assert check(verifier, with_nc(1)) is AuthResult.OK
    assert check(verifier, with_nc(1)) is AuthResult.REPLAY  # same (nonce, nc)
    assert check(verifier, with_nc(3)) is AuthResult.OK  # gaps are fine
    assert check(verifier, with_nc(2)) is AuthResult.REPLAY  # going back is not
    assert check(verifier, with_nc(4)) is AuthResult.OK
    assert verifier.tracked_nonces == 1
    fresh = verifier.challenge(T0)
    zero = dataclasses.replace(
        build_authorization(fresh, "REGISTER", URI, DEVICE, PASSWORD, "c"), nc="00000000"
    )
    assert zero.nonce is not None
    zero = dataclasses.replace(
        zero,
        response=compute_response(
            "MD5", DEVICE, REALM, PASSWORD, "REGISTER", URI, zero.nonce, "00000000", "c", "auth"
        ),
    )
    assert check(verifier, zero) is AuthResult.REPLAY


def test_bad_response_does_not_burn_nonce_counts() -> None:
    verifier = make_verifier()
    challenge = verifier.challenge(T0)
    forged = build_authorization(challenge, "REGISTER", URI, DEVICE, "guess", "c", 0xFFFFFFFF)
    assert check(verifier, forged) is AuthResult.BAD_RESPONSE
    real = build_authorization(challenge, "REGISTER", URI, DEVICE, PASSWORD, "c", 1)
    assert check(verifier, real) is AuthResult.OK


def test_without_qop_nonce_reuse_is_allowed_until_expiry() -> None:
    # GB28181 devices refresh with the nonce of the last 401 and no nc.
    verifier = make_verifier()
    creds = answer(verifier, qop=False)
    assert check(verifier, creds, T0 + 1) is AuthResult.OK
    assert check(verifier, creds, T0 + 200) is AuthResult.OK
    assert check(verifier, creds, T0 + 301) is AuthResult.STALE
    assert verifier.tracked_nonces == 0


def test_require_qop() -> None:
    verifier = make_verifier(require_qop=True)
    assert check(verifier, answer(verifier, qop=False)) is AuthResult.MISSING_FIELD
    assert check(verifier, answer(verifier, qop=True)) is AuthResult.OK


def test_wrong_user_and_realm() -> None:
    verifier = make_verifier()
    creds = answer(verifier)
    assert (
        verifier.verify(creds, "REGISTER", PASSWORD, T0, expected_user="34020000001320000002")
        is AuthResult.WRONG_USER
    )
    assert (
        verifier.verify(creds, "REGISTER", PASSWORD, T0, expected_user=DEVICE, expected_realm="x")
        is AuthResult.WRONG_REALM
    )
    other_realm = DigestVerifier(verifier.issuer, "3402000001")
    assert check(other_realm, creds) is AuthResult.WRONG_REALM
    assert (
        other_realm.verify(
            creds, "REGISTER", PASSWORD, T0, expected_user=DEVICE, expected_realm=REALM
        )
        is AuthResult.OK
    )


def test_opaque_must_be_echoed() -> None:
    verifier = make_verifier()
    creds = answer(verifier)
    assert creds.opaque == verifier.opaque
    assert check(verifier, dataclasses.replace(creds, opaque=None)) is AuthResult.MISSING_FIELD
    assert check(verifier, dataclasses.replace(creds, opaque="other")) is AuthResult.BAD_NONCE
    assert check(verifier, creds) is AuthResult.OK


def test_opaque_disabled_or_custom() -> None:
    plain = make_verifier(opaque=False)
    challenge = plain.challenge(T0)
    assert challenge.opaque is None and "opaque" not in str(challenge)
    creds = build_authorization(challenge, "REGISTER", URI, DEVICE, PASSWORD, "c")
    assert check(plain, dataclasses.replace(creds, opaque="anything")) is AuthResult.OK
    custom = make_verifier(opaque="cafe")
    assert custom.challenge(T0).opaque == "cafe"


@pytest.mark.parametrize("field", ["username", "realm", "nonce", "uri", "response"])
def test_missing_required_field(field: str) -> None:
    verifier = make_verifier()
    changes: dict[str, object] = {field: None}
    creds = dataclasses.replace(answer(verifier), **changes)  # type: ignore[arg-type]
    assert check(verifier, creds) is AuthResult.MISSING_FIELD


@pytest.mark.parametrize(
    "changes",
    [
        {"nc": None},
        {"cnonce": None},
        {"nc": ""},
        {"nc": "000000001"},
        {"nc": "0000000g"},
        {"nc": "+0000001"},
    ],
)
def test_missing_or_malformed_qop_fields(changes: dict[str, object]) -> None:
    verifier = make_verifier()
    creds = dataclasses.replace(answer(verifier), **changes)  # type: ignore[arg-type]
    assert check(verifier, creds) is AuthResult.MISSING_FIELD


def test_sess_without_cnonce_is_missing_field() -> None:
    verifier = make_verifier()
    creds = answer(verifier, algorithm="MD5-sess", qop=False)
    assert check(verifier, dataclasses.replace(creds, cnonce=None)) is AuthResult.MISSING_FIELD


def test_unsupported_algorithm_or_qop() -> None:
    verifier = make_verifier()
    creds = answer(verifier)
    assert (
        check(verifier, dataclasses.replace(creds, algorithm="SHA-512"))
        is AuthResult.UNSUPPORTED_ALGORITHM
    )
    assert (
        check(verifier, dataclasses.replace(creds, qop="auth-int"))
        is AuthResult.UNSUPPORTED_ALGORITHM
    )
    md5_only = make_verifier(algorithms=["MD5"])
    sha = build_authorization(
        make_verifier().challenge(T0, algorithm="SHA-256"), "REGISTER", URI, DEVICE, PASSWORD, "c"
    )
    assert check(md5_only, sha) is AuthResult.UNSUPPORTED_ALGORITHM


def test_response_comparison_details() -> None:
    verifier = make_verifier()
    creds = answer(verifier)
    assert creds.response is not None
    upper = dataclasses.replace(creds, response=creds.response.upper())
    assert check(verifier, upper) is AuthResult.OK  # some devices print upper-case hex
    verifier = make_verifier()
    creds = answer(verifier)
    assert check(verifier, dataclasses.replace(creds, response="é" * 32)) is (
        AuthResult.BAD_RESPONSE
    )
    assert check(verifier, dataclasses.replace(creds, response="")) is AuthResult.BAD_RESPONSE


def test_verify_uses_the_uri_the_client_sent() -> None:
    verifier = make_verifier()
    challenge = verifier.challenge(T0)
    # Dahua hashes sip:<server>@<ip:port> although it sent the Request-URI with the domain.
    ip_uri = "sip:34020000002000000001@192.168.28.10:5080"
    creds = build_authorization(challenge, "REGISTER", ip_uri, DEVICE, PASSWORD, "c")
    assert check(verifier, creds) is AuthResult.OK
    moved = dataclasses.replace(creds, uri=URI, nc="00000002")
    assert check(verifier, moved) is AuthResult.BAD_RESPONSE
    other_method = verifier.verify(
        dataclasses.replace(creds, nc="00000003"),
        "INVITE",
        PASSWORD,
        T0,
        expected_user=DEVICE,
    )
    assert other_method is AuthResult.BAD_RESPONSE


def test_replay_record_evicts_expired_nonces() -> None:
    verifier = make_verifier()
    for _ in range(3):
        assert check(verifier, answer(verifier, T0)) is AuthResult.OK
    assert verifier.tracked_nonces == 3
    late = T0 + 1000
    assert check(verifier, answer(verifier, late), late) is AuthResult.OK
    assert verifier.tracked_nonces == 1


def test_replay_record_is_capped_and_fails_safe() -> None:
    verifier = make_verifier(max_tracked_nonces=2)
    first = verifier.challenge(T0)
    second = verifier.challenge(T0 + 1)
    third = verifier.challenge(T0 + 2)
    fourth = verifier.challenge(T0 + 3)

    def use(challenge: DigestChallenge, nc: int, now: float) -> AuthResult:
        creds = build_authorization(challenge, "REGISTER", URI, DEVICE, PASSWORD, "c", nc)
        return check(verifier, creds, now)

    assert use(first, 1, T0 + 5) is AuthResult.OK
    assert use(second, 1, T0 + 5) is AuthResult.OK
    assert use(fourth, 1, T0 + 5) is AuthResult.OK  # evicts `first` while still valid
    assert verifier.tracked_nonces == 2
    # `first` lost its record: never accepted again, the device is sent a new nonce.
    assert use(first, 2, T0 + 6) is AuthResult.STALE
    # `third` was issued after `first`, so it is still accepted on first use.
    assert use(third, 1, T0 + 6) is AuthResult.OK
    assert use(second, 2, T0 + 6) is AuthResult.STALE  # evicted to make room for `third`
    assert use(fourth, 2, T0 + 6) is AuthResult.OK


# -- fuzzing -------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        "Digest ",
        "digest\t",
        "username=",
        "realm=",
        "nonce=",
        "uri=",
        "response=",
        "qop=",
        "nc=",
        "cnonce=",
        "opaque=",
        "algorithm=",
        "stale=",
        "MD5",
        "sha-256-SESS",
        "auth",
        "true",
        '"',
        '\\"',
        "\\",
        ",",
        ", ",
        " ",
        "=",
        "abc",
        "sip:34020000002000000001@3402000000",
        "00000001",
        "\r\n",
        "é",
    ]
)
_HEADERS = st.one_of(
    st.text(max_size=200),
    st.lists(_FRAGMENTS, max_size=30).map("".join),
    st.lists(_FRAGMENTS, max_size=30).map(lambda parts: "Digest " + "".join(parts)),
)


@given(_HEADERS)
@settings(max_examples=400, deadline=None)
def test_fuzz_credentials_parser(header: str) -> None:
    try:
        creds = DigestCredentials.parse(header)
    except DigestError:
        return
    assert DigestCredentials.parse(str(creds)) == creds


@given(_HEADERS)
@settings(max_examples=400, deadline=None)
def test_fuzz_challenge_parser(header: str) -> None:
    try:
        challenge = DigestChallenge.parse(header)
    except DigestError:
        return
    assert DigestChallenge.parse(str(challenge)) == challenge


@given(st.lists(_FRAGMENTS.filter(lambda f: "\\" not in f), max_size=30).map("".join))
@settings(max_examples=400, deadline=None)
def test_fast_and_general_param_scanners_agree(body: str) -> None:
    """Without backslashes the split-based fast path must match the scanner."""
    try:
        expected: dict[str, str] | None = _scan_params(body)
    except DigestError:
        expected = None
    try:
        got: dict[str, str] | None = _split_params(body)
    except DigestError:
        got = None
    assert got == expected


_VALUES = st.text(
    st.characters(min_codepoint=32, max_codepoint=0x2FF).filter(str.isprintable), max_size=20
)


@given(
    username=_VALUES,
    realm=_VALUES,
    nonce=_VALUES,
    uri=_VALUES,
    opaque=st.none() | _VALUES,
    algorithm=st.sampled_from(sorted(SUPPORTED_ALGORITHMS)),
    qop=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_fuzz_build_then_parse_then_verify_response(
    username: str, realm: str, nonce: str, uri: str, opaque: str | None, algorithm: str, qop: bool
) -> None:
    challenge = DigestChallenge(realm, nonce, algorithm, ("auth",) if qop else (), opaque)
    assert DigestChallenge.parse(str(challenge)) == challenge
    creds = build_authorization(challenge, "REGISTER", uri, username, "pw", "cn")
    parsed = DigestCredentials.parse(str(creds))
    assert parsed == creds


def test_general_scanner_edge_cases() -> None:
    # A backslash anywhere sends the header down the character scanner.
    creds = DigestCredentials.parse('Digest username="a\\\\"  , realm = "r\\"" ,uri=x\\y')
    assert (creds.username, creds.realm, creds.uri) == ("a\\", 'r"', "x\\y")
    for bad in (
        'Digest username="a\\"" junk',
        'Digest username="a\\\\" "b"',
        'Digest username=a\\"b',
        'Digest username="a\\"',
        'Digest username="\\a", no_equals',
    ):
        with pytest.raises(DigestError):
            DigestCredentials.parse(bad)
