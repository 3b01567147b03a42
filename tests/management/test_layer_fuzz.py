"""Generated requests against the management layer: never an exception (a 500), and a refused
request never changes anything."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from skaala_auth import MemoryKeyStore, Role
from skaala_auth.management import RESOURCES, ROUTES, ManagementApi

from .conftest import Team, session, snapshot

_FIELDS = ["name", "scopes", "expires_in", "grace_period", "user_id", "role", "team_id", ""]
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["read:bookings", "owner", "admin", "member", "user_2", "user_1"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)


def _encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


_SCOPES = st.sampled_from(["read:bookings", "write:calls", "admin:all", "READ:x", ""])
_PLAUSIBLE = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=110) | _JSON,
        "scopes": st.lists(_SCOPES, max_size=3) | _JSON,
        "expires_in": st.integers(-10, 10**9) | _JSON,
        "grace_period": st.integers(-10, 10**7) | _JSON,
        "user_id": st.sampled_from(["user_1", "user_2", "user_3", "user_5"]) | _JSON,
        "role": st.sampled_from(["owner", "admin", "member", "root"]) | _JSON,
        "team_id": _JSON,
    },
)
_VALID = st.sampled_from(
    [
        {"name": "n", "scopes": ["read:bookings"]},
        {"name": "n", "scopes": ["read:bookings"], "expires_in": 3600},
        {},
        {"grace_period": 0},
        {"user_id": "user_5", "role": "admin"},
        {"user_id": "user_2"},
        {"role": "owner"},
        {"role": "member"},
    ]
)
_BODIES = st.one_of(
    _VALID.map(_encoded),
    st.builds(lambda valid, more: {**valid, **more}, _VALID, _PLAUSIBLE).map(_encoded),
    st.binary(max_size=200),
    _JSON.map(_encoded),
    _PLAUSIBLE.map(_encoded),
    _PLAUSIBLE.map(_encoded),
    st.builds(lambda body, cut: body[:cut], _PLAUSIBLE.map(_encoded), st.integers(0, 40)),
)
_IDS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["user_1", "user_2", "user_3", "user_9", "key_x", "", "team_1"]),
)
_STATUSES = {200, 201, 204, 400, 403, 404, 405, 409, 413, 415}


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_if_requests_are_generated_then_never_an_exception_nor_a_change_on_a_refusal(
    layer: ManagementApi, team: Team, store: MemoryKeyStore, data: st.DataObject
) -> None:
    route = data.draw(st.sampled_from(ROUTES), label="route")
    resource = next(found for found in RESOURCES if route in found.routes.values())
    method = route.method
    if data.draw(st.integers(0, 9), label="another method") == 0:
        method = data.draw(st.sampled_from(["HEAD", "PUT", "OPTIONS", "post", "get", "TRACE"]))
    team_id = "team_1"
    if data.draw(st.integers(0, 9), label="another team") == 0:
        team_id = data.draw(st.sampled_from(["team_2", ""]) | _IDS)
    params: dict[str, object] = {
        "team_id": team_id,
        "key_id": data.draw(st.sampled_from([team.own_key_id, team.other_key_id]) | _IDS),
        "user_id": data.draw(st.sampled_from(["user_1", "user_2", "user_3"]) | _IDS),
    }
    if data.draw(st.integers(0, 19), label="drop a parameter") == 0:
        params.pop(data.draw(st.sampled_from(sorted(params))))
    role = data.draw(st.sampled_from([Role.OWNER, Role.ADMIN]))
    body = data.draw(_BODIES, label="body")
    content_type = data.draw(
        st.sampled_from(["application/json"] * 6 + ["application/json; charset=utf-8", None, "x/y"])
    )
    before = snapshot(store)
    response = layer.handle(
        resource,
        method=method,
        principal=session("user_1" if role is Role.OWNER else "user_3", role),
        path_params=params,
        body=body,
        content_type=content_type,
    )
    event(f"{response.status}")
    assert response.status in _STATUSES, response.body
    if response.status >= 400:
        assert snapshot(store) == before
        assert set(json.loads(response.body)) == {"error", "message"}
