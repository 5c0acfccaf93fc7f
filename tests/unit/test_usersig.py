"""UserSig (SPEC §8): interop with the `tls-sig-api-v2` package and every 70xxx code."""

from __future__ import annotations

import base64
import hmac
import json
import time
import zlib

import pytest
import TLSSigAPIv2  # type: ignore[import-untyped,import-not-found,unused-ignore]

from imcloud.im.usersig import UserSigError, generate, peek, verify

APP = 1400000000
KEY = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
USER = "administrator"
NOW = 1_700_000_000
DAY = 86400


def url_b64(data: bytes) -> str:
    return base64.b64encode(data).decode().translate(str.maketrans("+/=", "*-_"))


def pack(doc: object) -> str:
    return url_b64(zlib.compress(json.dumps(doc).encode()))


def unpack(sig: str) -> dict[str, object]:
    raw = base64.b64decode(sig.translate(str.maketrans("*-_", "+/=")))
    return json.loads(zlib.decompress(raw))  # type: ignore[no-any-return]


def code_of(sig: str, **overrides: object) -> int:
    args: dict[str, object] = {
        "sdkappid": APP,
        "secret_key": KEY,
        "identifier": USER,
        "now": NOW,
    }
    args.update(overrides)
    with pytest.raises(UserSigError) as info:
        verify(sig, **args)  # type: ignore[arg-type]
    return info.value.code


@pytest.fixture
def frozen_package_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the package sign at NOW so its sigs can be compared byte for byte."""
    monkeypatch.setattr(TLSSigAPIv2.time, "time", lambda: float(NOW))


# --- interop -----------------------------------------------------------------------


def test_package_sig_verifies() -> None:
    sig = TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig(USER, 180 * DAY)
    verify(sig, APP, KEY, USER, int(time.time()))


def test_package_sig_with_userbuf_verifies() -> None:
    sig = TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig_with_userbuf(USER, DAY, b"room-42")
    verify(sig, APP, KEY, USER, int(time.time()))


def test_package_sig_with_tampered_userbuf_is_70009() -> None:
    doc = unpack(TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig_with_userbuf(USER, DAY, b"abc"))
    doc["TLS.userbuf"] = base64.b64encode(b"abd").decode()
    assert code_of(pack(doc), now=int(time.time())) == 70009


def test_generated_sig_is_byte_identical_to_package(frozen_package_clock: None) -> None:
    theirs = TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig(USER, 3600)
    assert generate(APP, KEY, USER, 3600, now=NOW) == theirs


def test_generated_sig_with_userbuf_is_byte_identical_to_package(
    frozen_package_clock: None,
) -> None:
    theirs = TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig_with_userbuf(USER, 3600, b"\x00buf")
    assert generate(APP, KEY, USER, 3600, now=NOW, userbuf=b"\x00buf") == theirs


def test_generated_sig_has_package_fields(frozen_package_clock: None) -> None:
    # The package has no verify function: compare the decoded documents instead.
    ours = unpack(generate(APP, KEY, "user/1+é", 60, now=NOW))
    theirs = unpack(TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig("user/1+é", 60))
    assert ours == theirs
    assert ours["TLS.ver"] == "2.0"
    assert ours["TLS.sdkappid"] == APP
    assert ours["TLS.time"] == NOW
    assert ours["TLS.expire"] == 60


def test_generated_sig_verifies() -> None:
    verify(generate(APP, KEY, USER, DAY, now=NOW), APP, KEY, USER, NOW)
    verify(generate(APP, KEY, USER, DAY, now=NOW, userbuf=b"x"), APP, KEY, USER, NOW)


def test_generate_defaults_to_real_time() -> None:
    before = int(time.time())
    doc = peek(generate(APP, KEY, USER, 60))
    assert before <= doc["TLS.time"] <= int(time.time())  # type: ignore[operator]


def test_peek_returns_decoded_json() -> None:
    doc = peek(generate(APP, KEY, USER, 60, now=NOW))
    assert doc["TLS.identifier"] == USER
    assert set(doc) == {
        "TLS.ver",
        "TLS.identifier",
        "TLS.sdkappid",
        "TLS.expire",
        "TLS.time",
        "TLS.sig",
    }


# --- liberal acceptance --------------------------------------------------------------


def signed_with_star() -> str:
    for i in range(200):
        sig = generate(APP, KEY, f"user{i}", DAY, now=NOW)
        if "*" in sig:
            return sig
    raise AssertionError("no sig with '*' found")


def test_percent_encoded_star_is_accepted() -> None:
    sig = signed_with_star()
    identifier = str(peek(sig)["TLS.identifier"])
    verify(sig.replace("*", "%2A"), APP, KEY, identifier, NOW)
    verify(sig.replace("*", "%2a"), APP, KEY, identifier, NOW)


def test_missing_padding_is_accepted() -> None:
    for i in range(10):
        sig = generate(APP, KEY, f"u{i}", DAY, now=NOW)
        verify(sig.rstrip("_"), APP, KEY, f"u{i}", NOW)


def test_sdkappid_as_digit_string_is_accepted() -> None:
    doc = unpack(generate(APP, KEY, USER, DAY, now=NOW))
    doc["TLS.sdkappid"] = str(APP)
    verify(pack(doc), APP, KEY, USER, NOW)


def test_surrounding_whitespace_is_accepted() -> None:
    verify(" " + generate(APP, KEY, USER, DAY, now=NOW) + "\n", APP, KEY, USER, NOW)


# --- error codes ---------------------------------------------------------------------


def test_usersig_expired_is_70001() -> None:
    sig = generate(APP, KEY, USER, 60, now=NOW)
    verify(sig, APP, KEY, USER, NOW + 60)  # the last valid second
    assert code_of(sig, now=NOW + 61) == 70001


def test_usersig_expired_package_sig_is_70001() -> None:
    sig = TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig(USER, 10)
    assert code_of(sig, now=int(time.time()) + 11) == 70001


def test_tampered_signature_byte_is_70009() -> None:
    doc = unpack(generate(APP, KEY, USER, DAY, now=NOW))
    sig_field = str(doc["TLS.sig"])
    doc["TLS.sig"] = ("B" if sig_field[0] == "A" else "A") + sig_field[1:]
    assert code_of(pack(doc)) == 70009


def test_wrong_secret_key_is_70009() -> None:
    assert code_of(generate(APP, "other-key", USER, DAY, now=NOW)) == 70009


def test_extended_expiry_is_70009_not_accepted() -> None:
    doc = unpack(generate(APP, KEY, USER, 60, now=NOW))
    doc["TLS.expire"] = 10 * 365 * DAY
    assert code_of(pack(doc), now=NOW + 120) == 70009


def test_bad_signature_wins_over_expiry() -> None:
    doc = unpack(generate(APP, KEY, USER, 60, now=NOW))
    doc["TLS.sig"] = base64.b64encode(b"\x00" * 32).decode()
    assert code_of(pack(doc), now=NOW + 1000) == 70009


def test_wrong_app_is_70014() -> None:
    assert code_of(generate(APP + 1, KEY, USER, DAY, now=NOW)) == 70014


def test_wrong_app_wins_over_wrong_identifier() -> None:
    assert code_of(generate(APP + 1, KEY, "other", DAY, now=NOW)) == 70014


def test_wrong_identifier_is_70013() -> None:
    assert code_of(generate(APP, KEY, "mallory", DAY, now=NOW)) == 70013


def test_wrong_identifier_wins_over_bad_signature() -> None:
    assert code_of(generate(APP, "other-key", "mallory", DAY, now=NOW)) == 70013


@pytest.mark.parametrize(
    "sig",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("!!not base64!!", id="junk"),
        pytest.param("abcde", id="bad-length"),
        pytest.param(url_b64(b"plain bytes, not zlib"), id="base64-not-zlib"),
        pytest.param(url_b64(zlib.compress(b"{not json")), id="zlib-not-json"),
        pytest.param(url_b64(zlib.compress(b"\xff\xfe")), id="zlib-not-utf8"),
        pytest.param(pack(["a", "list"]), id="json-not-object"),
        pytest.param(url_b64(zlib.compress(b"[" * 60_000)), id="deeply-nested"),
        pytest.param(url_b64(zlib.compress(b" " * 1_000_000)), id="zlib-bomb"),
        pytest.param("A" * 20_000, id="too-long"),
    ],
)
def test_malformed_is_70003(sig: str) -> None:
    assert code_of(sig) == 70003
    with pytest.raises(UserSigError) as info:
        peek(sig)
    assert info.value.code == 70003


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("TLS.identifier", None),
        ("TLS.identifier", 42),
        ("TLS.sdkappid", None),
        ("TLS.sdkappid", "14x"),
        ("TLS.sdkappid", True),
        ("TLS.time", None),
        ("TLS.time", "1700000000"),
        ("TLS.expire", None),
        ("TLS.expire", 1.5),
        ("TLS.sig", None),
        ("TLS.sig", 7),
        ("TLS.userbuf", 7),
        ("TLS.ver", "1.0"),
    ],
)
def test_missing_or_mistyped_field_is_70003(field: str, value: object) -> None:
    doc = unpack(generate(APP, KEY, USER, DAY, now=NOW))
    if value is None:
        del doc[field]
    else:
        doc[field] = value
    assert code_of(pack(doc)) == 70003


def test_error_carries_code_and_message() -> None:
    with pytest.raises(UserSigError) as info:
        verify("", APP, KEY, USER, NOW)
    assert info.value.code == 70003
    assert info.value.message
    assert str(info.value) == info.value.message


def test_signature_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return bool(real(a, b))

    # usersig calls hmac.compare_digest through the module, so this sees every call.
    monkeypatch.setattr(hmac, "compare_digest", counting)
    verify(generate(APP, KEY, USER, DAY, now=NOW), APP, KEY, USER, NOW)
    assert code_of(generate(APP, "other-key", USER, DAY, now=NOW)) == 70009
    assert len(calls) == 2
