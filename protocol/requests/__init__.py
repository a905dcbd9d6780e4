"""Request names and the typed shape of each request's fields.

The names are the original API's, spelled exactly as existing clients send
them.  One module per area holds the dataclasses its requests parse into.
"""

REGISTRATION = "Registration"
AUTH = "Auth"
DISABLE = "disable"
EMAIL = "Email"
MEDIA = "Media"
GET_MEDIA = "GetMedia"
CHANGE_USER = "ChangeUser"
GET_USER = "GetUser"
REQUEST_FR_BL = "RequestFrBl"
CREATE_DIALOG = "CreateDialog"
CHANGE_DIALOG = "ChangeDialog"
KICK_USER = "KickUser"
GET_DIALOGS = "GetDialogs"
GET_USERS_DIALOG = "GetUsersDialog"
SEND_MESSAGE = "SendMessage"
GET_MESSAGES = "GetMessages"
GET_DEL_MESSAGES = "GetDelMessages"
SEARCH = "Search"

#: Every request of the original API, in its order.
ORIGINAL_REQUESTS: tuple[str, ...] = (
    REGISTRATION,
    AUTH,
    DISABLE,
    EMAIL,
    MEDIA,
    GET_MEDIA,
    CHANGE_USER,
    GET_USER,
    REQUEST_FR_BL,
    CREATE_DIALOG,
    CHANGE_DIALOG,
    KICK_USER,
    GET_DIALOGS,
    GET_USERS_DIALOG,
    SEND_MESSAGE,
    GET_MESSAGES,
    GET_DEL_MESSAGES,
    SEARCH,
)
