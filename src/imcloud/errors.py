"""The one exception type a refused operation raises, carrying its rule and SPEC §7 code."""

from __future__ import annotations

from typing import Any

APP_DISABLED = 60016


class Refused(Exception):
    """An operation refused by a rule; nothing was changed.

    `rule` names the SPEC rule ("R4"), `code` the §7 error code where one exists.
    Adapters turn it into their own shape (CLI JSON error, v4 envelope, console form).
    """

    def __init__(self, message: str, *, rule: str | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.rule = rule
        self.code = code

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "rule": self.rule, "message": self.message}


class NotFound(Refused):
    """The thing named does not exist (or is not visible to the caller)."""
