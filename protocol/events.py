"""Event kinds carried by ``Event`` pushes and ``GetEvents`` pages.

Every event body is ``{"Seq": int, "Kind": str, ...fields}``; ``Seq`` is per
user, strictly increasing, without gaps in what a subscriber receives.  The
fields of each kind are listed in docs/protocol.md.
"""

NEW_MESSAGE = "NewMessage"  # PkDialog, Msg (the GetMessages item shape)
MESSAGE_EDITED = "MessageEdited"  # PkDialog, Msg
MESSAGE_DELETED = "MessageDeleted"  # PkDialog, msgKey, deleteAt
MESSAGE_HIDDEN = "MessageHidden"  # PkDialog, msgKey: deleteOnlyMe, to the hider's own devices
MESSAGES_READ = "MessagesRead"  # PkDialog, Id (reader), msgKey (read up to)
DIALOG_CREATED = "DialogCreated"  # PkDialog, name, photo, private, Owner
DIALOG_CHANGED = "DialogChanged"  # PkDialog, name, photo, private (as they now are)
MEMBERS_ADDED = "MembersAdded"  # PkDialog, Ids
MEMBER_KICKED = "MemberKicked"  # PkDialog, Id (removed), By (who removed; Id itself = left)
FRIEND_REQUEST = "FriendRequest"  # From (who asked), To: sent to both users
FRIEND_ACCEPTED = "FriendAccepted"  # From (who accepted), To: sent to both users
FRIEND_REQUEST_CANCELLED = "FriendRequestCancelled"  # From (who had asked), To
FRIEND_REMOVED = "FriendRemoved"  # From (who ended it), To
BLOCKED = "Blocked"  # Id (whom I blocked: sent to my own devices only)
UNBLOCKED = "Unblocked"  # Id (likewise)

#: Push frame names (the frame's name field, beside the event kinds above).
PUSH_EVENT = "Event"
PUSH_RESYNC = "Resync"  # LastSeq: subscribe again from there
PUSH_TYPING = "Typing"  # PkDialog, Id: ephemeral, no Seq
