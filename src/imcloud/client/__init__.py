"""The imcloud Python client: REST admin calls and the WebSocket chat protocol.

    admin = AdminClient("http://127.0.0.1:8080", sdkappid, secret_key)
    await admin.call("im_open_login_svc/account_import", {"UserID": "alice"})

    alice = await ChatClient.connect("http://127.0.0.1:8080", sdkappid,
                                     "alice", user_sig(sdkappid, secret_key, "alice"))
    await alice.join("room-1")
    await alice.send_group("room-1", "hello")
    async for frame in alice.messages():   # {"op": "msg", "group", "seq", "from", ...}
        ...
"""

from imcloud.client.chat import AdminClient, ChatClient, ClientError, user_sig

__all__ = ["AdminClient", "ChatClient", "ClientError", "user_sig"]
