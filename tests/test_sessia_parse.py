"""``parse_sessia`` reads the usual ``sessia`` straight from the map and leaves
everything else to the general path: for every shape, valid or not, the two
must give the same Sessia or the same error."""

from __future__ import annotations

import copy
import itertools

import pytest

from protocol.fields import Fields
from protocol.session import MAX_TOKEN_LENGTH, _parse_fields, _parse_plain, parse_sessia
from protocol.status import SessiaError

GOOD = {
    "tocken": "t" * 43,
    "device": {"deviceid": "dev-1", "os": "Linux", "mac": "00:11", "hostname": "box"},
    "client": {"nameclient": "sessia-desktop", "hashcert": "h" * 64, "version": "17"},
}

#: (path, value) changes to GOOD; None as the value removes the field.
CHANGES = [
    (("tocken",), None), (("tocken",), ""), (("tocken",), 7), (("tocken",), "x" * MAX_TOKEN_LENGTH),
    (("tocken",), "x" * (MAX_TOKEN_LENGTH + 1)), (("tocken",), "a\x00b"), (("tocken",), ["t"]),
    (("Tocken",), "T"), (("TOCKEN",), "upper"),
    (("device",), None), (("device",), "dev"), (("device",), {}), (("Device",), {"deviceid": "d2"}),
    (("device", "deviceid"), None), (("device", "deviceid"), ""), (("device", "deviceid"), 12345),
    (("device", "deviceid"), "d" * 128), (("device", "deviceid"), "d" * 129), (("device", "DeviceId"), "D"),
    (("device", "os"), None), (("device", "os"), ""), (("device", "os"), 3.5), (("device", "os"), True),
    (("device", "mac"), "m" * 129), (("device", "hostname"), "h" * 256), (("device", "hostname"), "h" * 257),
    (("device", "hostname"), "a\x00"), (("device", "extra"), "ignored"),
    (("client",), None), (("client",), ""), (("client",), "c"), (("client",), {}),
    (("client", "nameclient"), ""), (("client", "nameclient"), None), (("client", "nameclient"), 5),
    (("client", "hashcert"), "h" * 257), (("client", "version"), None), (("client", "version"), 18),
    (("client", "version"), "v" * 65), (("client", "Version"), "9"), (("client", "version"), 10**70),
    (("client", "version"), 10**63), (("device", "os"), -12),
    (("extra",), {"nested": 1}), (("ключ",), "значение"),
]


def _changed(changes) -> dict:
    sessia = copy.deepcopy(GOOD)
    for path, value in changes:
        target = sessia
        for key in path[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
            if not isinstance(target, dict):
                break
        else:
            if value is None:
                target.pop(path[-1], None)
            else:
                target[path[-1]] = value
    return sessia


def _outcome(parse, body: dict, need_token: bool):
    try:
        return parse(Fields(body), need_token=need_token)
    except SessiaError as exc:
        return type(exc), str(exc)


@pytest.mark.parametrize("need_token", [True, False])
def test_the_plain_path_answers_as_the_general_one(need_token):
    bodies = [_changed(())]
    bodies += [_changed((c,)) for c in CHANGES]
    bodies += [_changed(pair) for pair in itertools.combinations(CHANGES, 2)]
    bodies += [{"sessia": "not a map"}, {}, {"sessia": {f"k{i}": i for i in range(65)}}]
    taken = 0
    for sessia in bodies:
        body = {"sessia": sessia} if "sessia" not in sessia else sessia
        assert _outcome(parse_sessia, body, need_token) == _outcome(_parse_fields, body, need_token), body
        taken += _parse_plain(body.get("sessia"), need_token) is not None
    # Both paths were exercised: the usual shapes read directly, the rest by the general path.
    assert 50 < taken < len(bodies) - 50
