"""IM rules that need no database (SPEC §2, §7 E3): group types, caps, field limits.

The counting rules (E1/E2) live in the services as conditional UPDATEs, because only
the database can decide them atomically; what they compare against is decided here.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from imcloud.catalog import Edition, Limit
from imcloud.errors import Code, refuse

# Accepted names (aliases included) → the canonical type stored and returned.
GROUP_TYPES: Mapping[str, str] = {
    "Private": "Private",
    "Work": "Private",
    "Public": "Public",
    "ChatRoom": "ChatRoom",
    "Meeting": "ChatRoom",
    "AVChatRoom": "AVChatRoom",
    "Community": "Community",
}
AV = "AVChatRoom"
JOIN_OPTIONS = ("FreeAccess", "NeedPermission", "DisableApply")
DEFAULT_JOIN_OPTION: Mapping[str, str] = {
    "Private": "DisableApply",
    "Public": "NeedPermission",
    "ChatRoom": "FreeAccess",
    "AVChatRoom": "FreeAccess",
    "Community": "FreeAccess",
}
AUTO_GROUP_PREFIX = "@TGS#"

# Byte limits of Tencent's API (UTF-8).
MAX_BYTES: Mapping[str, int] = {
    "GroupId": 48,
    "Name": 30,
    "Introduction": 240,
    "Notification": 300,
    "FaceUrl": 100,
    "UserID": 32,
    "Nick": 64,
}


def group_type(name: str) -> str:
    try:
        return GROUP_TYPES[name]
    except KeyError:
        raise refuse(Code.INVALID_PARAMETER,
                     f"invalid parameter: Type {name!r} is not one of "
                     f"{', '.join(GROUP_TYPES)}") from None


def counts_toward_user_limit(kind: str) -> bool:
    """Groups a user can join (SPEC §2): every type but AVChatRoom."""
    return kind != AV


def member_cap(kind: str, requested: int | None, limits: Mapping[str, Limit],
               edition: Edition, field: str = "MaxMemberCount") -> int | None:
    """E3: a new group's member cap, fixed now; None = unlimited (AVChatRoom)."""
    if kind == AV:
        return None
    if kind == "Community":
        if not edition.community:
            raise refuse(Code.NEEDS_FLAGSHIP, "Community groups need the Flagship edition")
        limit: int | None = edition.community_members
    else:
        limit = limits["group_members"]
    if requested is None:
        return limit
    if requested < 1:
        raise refuse(Code.INVALID_PARAMETER, f"invalid parameter: {field} must be >= 1")
    if limit is not None and requested > limit:
        raise refuse(Code.MEMBER_LIMIT,
                     f"{field} {requested} is above this app's member limit of {limit}")
    return requested


def raised_cap(kind: str, current_cap: int | None, requested: int, members: int,
               limits: Mapping[str, Limit], edition: Edition) -> int | None:
    """E3: `modify_group_base_info` may lower a cap (not below the members it has) and
    raise it up to the limit in force now; a grandfathered cap may be kept."""
    if kind == AV:
        return None
    if requested < members:
        raise refuse(Code.INVALID_PARAMETER,
                     f"invalid parameter: MaxMemberNum {requested} is below the "
                     f"{members} members the group has")
    if current_cap is not None and requested <= current_cap:
        return requested
    return member_cap(kind, requested, limits, edition, "MaxMemberNum")


def new_group_id() -> str:
    return AUTO_GROUP_PREFIX + secrets.token_urlsafe(9).replace("-", "A").replace("_", "B")


def check_group_id(group_id: str) -> str:
    if (not group_id or len(group_id.encode()) > MAX_BYTES["GroupId"]
            or group_id.startswith(AUTO_GROUP_PREFIX) or not group_id.isprintable()
            or any(c.isspace() for c in group_id)):
        raise refuse(Code.INVALID_GROUP_ID, f"invalid group ID {group_id!r}")
    return group_id


def check_join_option(option: str) -> str:
    if option not in JOIN_OPTIONS:
        raise refuse(Code.INVALID_PARAMETER,
                     f"invalid parameter: ApplyJoinOption must be one of {', '.join(JOIN_OPTIONS)}")
    return option


def client_may_join(kind: str, join_option: str) -> bool:
    """SPEC §9: what a client may join by itself over WebSocket."""
    return kind in ("ChatRoom", AV) or (kind == "Public" and join_option == "FreeAccess")

