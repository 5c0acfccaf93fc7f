"""The one exception type a refused operation raises, carrying its rule and SPEC §7 code."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Code(IntEnum):
    """SPEC §7 error codes (Tencent's numbering)."""

    OK = 0
    INTERNAL = 10002  # our own fault; never a stack trace to the client
    UNKNOWN_COMMAND = 10003
    INVALID_PARAMETER = 10004
    FREQUENCY_LIMIT = 10006
    NO_PERMISSION = 10007
    GROUP_NOT_FOUND = 10010
    GROUP_FULL = 10014
    INVALID_GROUP_ID = 10015
    ACCOUNT_NOT_FOUND = 10019
    GROUP_ID_USED = 10021
    MESSAGE_FREQUENCY_LIMIT = 10023
    GROUP_ID_USED_BY_YOU = 10025
    AV_ROOM_LIMIT = 10036
    GROUPS_PER_USER_LIMIT = 10037
    MEMBER_LIMIT = 10038
    TRIAL_GROUP_LIMIT = 10058
    NEEDS_FLAGSHIP = 10059
    INVALID_SDKAPPID = 60006
    REST_FREQUENCY_LIMIT = 60007
    NOT_ADMIN = 60010
    MISSING_SDKAPPID = 60012
    APP_DISABLED = 60016
    USERSIG_EXPIRED = 70001
    USERSIG_MALFORMED = 70003
    USERSIG_BAD_SIGNATURE = 70009
    USERSIG_IDENTIFIER_MISMATCH = 70013
    USERSIG_SDKAPPID_MISMATCH = 70014
    TRIAL_ACCOUNT_LIMIT = 70398
    TRIAL_DAU_LIMIT = 72000
    CONTENT_BLOCKED = 80001


APP_DISABLED = int(Code.APP_DISABLED)


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


def refuse(code: Code, message: str, rule: str | None = None) -> Refused:
    return Refused(message, code=int(code), rule=rule)
