"""Pure IM-protocol logic (UserSig, content filtering, group rules): no I/O, no database."""
