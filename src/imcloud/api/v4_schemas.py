"""Request bodies of the v4 REST API, with Tencent's field names (SPEC §8).

Unknown fields are ignored (clients send more than we read); wrong types, missing
required fields and oversize strings are 10004 naming the field. Older clients send
`Identifier` where newer ones send `UserID`: both are accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, model_validator

from imcloud.im.rules import GROUP_TYPES, MAX_BYTES

U32 = Annotated[int, Field(ge=0, le=4_294_967_295)]
# Offsets and sequence numbers end up as SQL parameters: past a signed 64-bit integer
# no database can bind them (found by fuzzing: 10002 instead of 10004).
I64 = Annotated[int, Field(ge=0, le=2**63 - 1)]
# Levels of objects and arrays in a message element's MsgContent. Tencent's elements
# use three; a stored message too deep for the JSON encoder would break every later
# read of its history (found by fuzzing).
MAX_CONTENT_DEPTH = 16


def _max_bytes(field: str) -> AfterValidator:
    limit = MAX_BYTES[field]

    def check(v: str) -> str:
        if len(v.encode()) > limit:
            raise ValueError(f"longer than {limit} bytes")
        if "\x00" in v:  # PostgreSQL cannot store it; no client needs it
            raise ValueError("contains a NUL character")
        return v

    return AfterValidator(check)


UserIdT = Annotated[str, Field(min_length=1), _max_bytes("UserID")]
GroupIdT = Annotated[str, Field(min_length=1), _max_bytes("GroupId")]
NameT = Annotated[str, Field(min_length=1), _max_bytes("Name")]
IntroductionT = Annotated[str, _max_bytes("Introduction")]
NotificationT = Annotated[str, _max_bytes("Notification")]
FaceUrlT = Annotated[str, _max_bytes("FaceUrl")]
NickT = Annotated[str, _max_bytes("Nick")]
# A group type: checked by the service (10004 naming the types); documented as an enum.
GroupTypeT = Annotated[str, Field(min_length=1, max_length=16,
                                  json_schema_extra={"enum": list(GROUP_TYPES)})]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def depth(value: Any) -> int:
    """Levels of nested objects and arrays in a JSON value (iterative: any depth)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is not None:
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in children)
    return deepest


class MsgElem(Body):
    MsgType: Literal[
        "TIMTextElem", "TIMLocationElem", "TIMFaceElem", "TIMCustomElem",
        "TIMSoundElem", "TIMImageElem", "TIMFileElem", "TIMVideoFileElem"]
    MsgContent: dict[str, Any]

    @model_validator(mode="after")
    def _content_shape(self) -> MsgElem:
        if depth(self.MsgContent) > MAX_CONTENT_DEPTH:
            raise ValueError(f"MsgContent is nested more than {MAX_CONTENT_DEPTH} levels deep")
        if self.MsgType == "TIMTextElem" and not isinstance(self.MsgContent.get("Text"), str):
            raise ValueError("MsgContent.Text must be a string")
        return self


MsgBody = Annotated[list[MsgElem], Field(min_length=1, max_length=20)]


class AccountImport(Body):
    UserID: UserIdT = Field(validation_alias=AliasChoices("UserID", "Identifier"))
    Nick: NickT = ""
    FaceUrl: FaceUrlT = ""


class MultiAccountImport(Body):
    Accounts: Annotated[list[UserIdT], Field(min_length=1, max_length=100)]


class UserItem(Body):
    UserID: UserIdT = Field(validation_alias=AliasChoices("UserID", "Identifier"))


class AccountCheck(Body):
    CheckItem: Annotated[list[UserItem], Field(min_length=1, max_length=100)]


class AccountDelete(Body):
    DeleteItem: Annotated[list[UserItem], Field(min_length=1, max_length=100)]


class MemberItem(Body):
    Member_Account: UserIdT
    Role: Literal["Admin", "Member"] | None = None


class CreateGroup(Body):
    Owner_Account: UserIdT | None = None
    Type: GroupTypeT
    GroupId: GroupIdT | None = None
    Name: NameT
    Introduction: IntroductionT = ""
    Notification: NotificationT = ""
    FaceUrl: FaceUrlT = ""
    MaxMemberCount: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    ApplyJoinOption: Literal["FreeAccess", "NeedPermission", "DisableApply"] | None = None
    MemberList: Annotated[list[MemberItem], Field(max_length=500)] = []


class GroupRef(Body):
    GroupId: GroupIdT


class GetGroupInfo(Body):
    GroupIdList: Annotated[list[GroupIdT], Field(min_length=1, max_length=50)]


class ModifyGroupBaseInfo(Body):
    GroupId: GroupIdT
    Name: NameT | None = None
    Introduction: IntroductionT | None = None
    Notification: NotificationT | None = None
    FaceUrl: FaceUrlT | None = None
    MaxMemberNum: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    ApplyJoinOption: Literal["FreeAccess", "NeedPermission", "DisableApply"] | None = None


class AddMemberItem(Body):
    Member_Account: UserIdT


class AddGroupMember(Body):
    GroupId: GroupIdT
    Silence: Literal[0, 1] = 0
    MemberList: Annotated[list[AddMemberItem], Field(min_length=1, max_length=300)]


class DeleteGroupMember(Body):
    GroupId: GroupIdT
    Silence: Literal[0, 1] = 0
    Reason: Annotated[str, Field(max_length=200)] = ""
    MemberToDel_Account: Annotated[list[UserIdT], Field(min_length=1, max_length=100)]


class GetGroupMemberInfo(Body):
    GroupId: GroupIdT
    Limit: Annotated[int, Field(ge=0, le=10_000)] | None = None
    Offset: I64 = 0


class GetJoinedGroupList(Body):
    Member_Account: UserIdT
    Limit: Annotated[int, Field(ge=0, le=10_000)] | None = None
    Offset: I64 = 0
    GroupType: GroupTypeT | None = None


class GetAppidGroupList(Body):
    Limit: Annotated[int, Field(ge=1, le=10_000)] = 10_000
    Next: I64 = 0
    GroupType: GroupTypeT | None = None


class SendGroupMsg(Body):
    GroupId: GroupIdT
    Random: U32
    MsgBody: MsgBody
    From_Account: UserIdT | None = None


class GroupMsgGetSimple(Body):
    GroupId: GroupIdT
    ReqMsgNumber: Annotated[int, Field(ge=1, le=20)]
    ReqMsgSeq: I64 | None = None


class SendMsg(Body):
    SyncOtherMachine: Literal[1, 2] = 1
    From_Account: UserIdT | None = None
    To_Account: UserIdT
    MsgRandom: U32
    MsgBody: MsgBody
    MsgLifeTime: Annotated[int, Field(ge=0, le=604_800)] | None = None


class AdminGetRoamMsg(Body):
    Operator_Account: UserIdT
    Peer_Account: UserIdT
    MaxCnt: Annotated[int, Field(ge=1, le=100)]
    MinTime: Annotated[int, Field(ge=0, le=4_294_967_295)]
    MaxTime: Annotated[int, Field(ge=0, le=4_294_967_295)]
    LastMsgKey: Annotated[str, Field(max_length=64)] | None = None


class GetAppInfo(Body):
    RequestField: Annotated[list[str], Field(max_length=50)] | None = None


class Empty(Body):
    pass
