"""TLSSigAPIv2 UserSigs (SPEC §8): generate and verify, byte-compatible with Tencent's.

Our own implementation so the server does not depend on a client SDK; the layout
(JSON key order, `json.dumps` separators, default zlib level, `+/=` → `*-_`) matches
the `tls-sig-api-v2` package exactly, so both produce identical strings.
Verification is liberal in what it accepts (percent-encoded `*`, missing padding,
`TLS.sdkappid` as a digit string) because client libraries in the wild differ.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import zlib
from urllib.parse import unquote

__all__ = [
    "BAD_SIGNATURE",
    "EXPIRED",
    "IDENTIFIER_MISMATCH",
    "MALFORMED",
    "SDKAPPID_MISMATCH",
    "UserSigError",
    "generate",
    "peek",
    "verify",
]

EXPIRED = 70001
MALFORMED = 70003
BAD_SIGNATURE = 70009
IDENTIFIER_MISMATCH = 70013
SDKAPPID_MISMATCH = 70014

VERSION = "2.0"
# Real sigs are a few hundred characters; the caps stop a zlib bomb or a huge
# query string from costing more than a bounded amount of work.
MAX_SIG_CHARS = 16_384
MAX_JSON_BYTES = 65_536

_TO_STD = str.maketrans({"*": "+", "-": "/", "_": "="})
_TO_URL = str.maketrans({"+": "*", "/": "-", "=": "_"})


class UserSigError(Exception):
    """A UserSig refused; `code` is the SPEC §7 70xxx code for the v4 envelope."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _content(identifier: str, sdkappid: int, t: int, expire: int, userbuf_b64: str | None) -> bytes:
    """The exact text HMAC'd by every TLSSigAPIv2 implementation."""
    text = (
        f"TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{t}\nTLS.expire:{expire}\n"
    )
    if userbuf_b64 is not None:
        text += f"TLS.userbuf:{userbuf_b64}\n"
    return text.encode("utf-8")


def _sign(secret_key: str, content: bytes) -> str:
    digest = hmac.new(secret_key.encode("utf-8"), content, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def generate(
    sdkappid: int,
    secret_key: str,
    identifier: str,
    expire: int,
    now: int | None = None,
    userbuf: bytes | None = None,
) -> str:
    """Make a UserSig valid for `expire` seconds from `now` (default: real time)."""
    t = int(time.time()) if now is None else int(now)
    doc: dict[str, object] = {
        "TLS.ver": VERSION,
        "TLS.identifier": identifier,
        "TLS.sdkappid": int(sdkappid),
        "TLS.expire": int(expire),
        "TLS.time": t,
    }
    userbuf_b64 = None
    if userbuf is not None:
        userbuf_b64 = base64.b64encode(userbuf).decode("ascii")
        doc["TLS.userbuf"] = userbuf_b64
    doc["TLS.sig"] = _sign(
        secret_key, _content(identifier, int(sdkappid), t, int(expire), userbuf_b64)
    )
    packed = zlib.compress(json.dumps(doc).encode("utf-8"))
    return base64.b64encode(packed).decode("ascii").translate(_TO_URL)


def _malformed(why: str) -> UserSigError:
    return UserSigError(MALFORMED, f"UserSig malformed: {why}")


def peek(usersig: str) -> dict[str, object]:
    """Decode a UserSig to its JSON object without checking anything else (70003)."""
    if not isinstance(usersig, str) or not usersig.strip():
        raise _malformed("empty")
    if len(usersig) > MAX_SIG_CHARS:
        raise _malformed("too long")
    text = usersig.strip()
    if "%" in text:  # `*` percent-encoded by some clients (%2A)
        text = unquote(text)
    text = text.translate(_TO_STD).rstrip("=")
    text += "=" * (-len(text) % 4)
    try:
        packed = base64.b64decode(text, validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, MAX_JSON_BYTES)
        if inflater.unconsumed_tail:
            raise _malformed("too large")
        doc = json.loads(raw)
    except (binascii.Error, ValueError, zlib.error, RecursionError) as exc:
        raise _malformed(type(exc).__name__) from None
    if not isinstance(doc, dict):
        raise _malformed("not a JSON object")
    return doc


def _int_field(doc: dict[str, object], key: str, *, digits_ok: bool = False) -> int:
    value = doc.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if digits_ok and isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise _malformed(f"{key} missing or not an integer")


def _str_field(doc: dict[str, object], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise _malformed(f"{key} missing or not a string")
    return value


def verify(usersig: str, sdkappid: int, secret_key: str, identifier: str, now: int) -> None:
    """Accept `usersig` for (`sdkappid`, `identifier`) at `now`, or raise UserSigError.

    Order (SPEC §7): malformed 70003 → sdkappid 70014 → identifier 70013 →
    signature 70009 → expiry 70001, so a stale but genuine sig reports "expired".
    """
    doc = peek(usersig)
    if "TLS.ver" in doc and doc["TLS.ver"] != VERSION:
        raise _malformed("unsupported TLS.ver")
    sig_appid = _int_field(doc, "TLS.sdkappid", digits_ok=True)
    sig_identifier = _str_field(doc, "TLS.identifier")
    t = _int_field(doc, "TLS.time")
    expire = _int_field(doc, "TLS.expire")
    given = _str_field(doc, "TLS.sig")
    userbuf_b64 = None
    if "TLS.userbuf" in doc:
        userbuf_b64 = _str_field(doc, "TLS.userbuf")

    if sig_appid != sdkappid:
        raise UserSigError(SDKAPPID_MISMATCH, "UserSig sdkappid does not match the request")
    if sig_identifier != identifier:
        raise UserSigError(IDENTIFIER_MISMATCH, "UserSig identifier does not match the request")
    expected = _sign(secret_key, _content(identifier, sdkappid, t, expire, userbuf_b64))
    if not hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8")):
        raise UserSigError(BAD_SIGNATURE, "UserSig signature is invalid")
    if now > t + expire:
        raise UserSigError(EXPIRED, "UserSig expired")
