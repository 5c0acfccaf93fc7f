"""`imcloud serve`'s log lines: one JSON object per line (or plain text), a request id on
every line emitted while serving a request, and never a secret.

The request id comes from the caller's `X-Request-Id` (1–128 characters of
`A-Z a-z 0-9 . _ : -`; anything else is replaced, never echoed) or is made here; it is
echoed in the response's `X-Request-Id` and kept in a context variable, so every line
logged while that request runs — by imcloud, uvicorn or a library — carries it.
Secrets are kept out twice: what we log never includes a query string, a body, a
cookie or a header value, and every line is redacted on its way out (`usersig=…`,
`password…`, `secret_key…`, CSRF tokens, session cookies) for what others log.
"""

from __future__ import annotations

import logging
import os
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from imcloud.settings import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("imcloud_request_id", default=None)
access = logging.getLogger("imcloud.access")

_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SECRET_NAMES = (
    r"usersig|user_sig|secret[_-]?key|secretkey|password|passwd|pwd|"
    r"csrf[_-]?token|x-csrf-token|imcloud_session|imcloud_csrf|"
    r"set-cookie|cookie|authorization|token"
)
_SECRET = re.compile(rf"(?i)((?:{_SECRET_NAMES})[\"']?\s*[=:]\s*[\"']?)([^\s&\"',;}}]+)")
_SECRET_KEY = re.compile(rf"(?i)(?:{_SECRET_NAMES})")
REDACTED = "[redacted]"
# LogRecord attributes that are not extra fields (uvicorn adds `color_message`).
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


def request_id_of(scope: Any) -> str:
    """The request's id: the caller's `X-Request-Id` if it is well-formed, else a new one."""
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            if len(value) <= 128:
                text: str = value.decode("latin-1")
                if _ID.fullmatch(text):
                    return text
            break
    return os.urandom(8).hex()


_STEMS = re.compile("sig|key|pass|pwd|csrf|session|cookie|auth|token")
_secret_field: dict[str, bool] = {}  # field name -> is it secret-ish (names are few)


def redact(text: str) -> str:
    """`usersig=eJw…` → `usersig=[redacted]`, and the same for every secret-ish name.
    Most lines name none of them: a substring test skips the regex for those."""
    if _STEMS.search(text.lower()) is None:
        return text
    return _SECRET.sub(rf"\1{REDACTED}", text)


def _is_secret(name: str) -> bool:
    known = _secret_field.get(name)
    if known is None:
        known = _secret_field[name] = _SECRET_KEY.search(name) is not None
    return known


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _STANDARD:
            continue
        if _is_secret(key):
            out[key] = REDACTED
        elif isinstance(value, str):
            out[key] = redact(value)
        else:
            out[key] = value
    return out


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", "request_id", ...fields}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": REQUEST_ID.get(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request_id] message key=value …` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = (
            f"{_time(record)} {record.levelname} {record.name} "
            f"[{REQUEST_ID.get() or '-'}] {redact(record.getMessage())}"
        )
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def config(settings: Settings) -> dict[str, Any]:
    """The `logging.config.dictConfig` of `imcloud serve` (uvicorn's loggers included;
    uvicorn's own access log is off: it prints query strings, which hold UserSigs)."""
    level = settings.log_level.upper()
    # Lines name no source file, thread or process: skip finding them (logging HOWTO,
    # "Optimization"), a third of the cost of a line.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "imcloud": {"()": JsonFormatter if settings.log_format == "json" else TextFormatter}
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "imcloud",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.access": {"handlers": [], "propagate": False},
            "imcloud.access": {"level": level if settings.access_log else "WARNING"},
        },
    }


QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes: DEBUG, not INFO


def http_line(method: str, path: str, status: int, seconds: float) -> None:
    """The access line of a request that is not a v4 call."""
    level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
    if access.isEnabledFor(level):
        access.log(
            level,
            "%s %s %d",
            method,
            path[:200],
            status,
            extra={"status": status, "duration_ms": round(seconds * 1000, 2)},
        )


def v4_line(
    method: str,
    service: str,
    name: str,
    command: str,
    sdkappid: str | None,
    code: int,
    seconds: float,
) -> None:
    """The access line of a v4 call: its command, app and ErrorCode (HTTP is always 200)."""
    if access.isEnabledFor(logging.INFO):
        appid = (
            int(sdkappid)
            if sdkappid and sdkappid.isascii() and sdkappid.isdigit() and len(sdkappid) <= 12
            else None
        )
        access.info(
            "%s /v4/%s/%s %d",
            method,
            service,
            name[:100],
            code,
            extra={
                "command": command,
                "sdkappid": appid,
                "error_code": code,
                "status": 200,
                "duration_ms": round(seconds * 1000, 2),
            },
        )
