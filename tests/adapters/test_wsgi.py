"""The plain WSGI middleware beyond the contract suite."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.test import Client

from skaala_auth import Authenticator, InvalidKeyError, KeyManager, Principal
from skaala_auth.rules import Rules
from skaala_auth.wsgi import PRINCIPAL_KEY, ApiKeyMiddleware

SEEN: list[Principal | None] = []


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    SEEN.append(environ[PRINCIPAL_KEY])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture
def key(manager: KeyManager) -> str:
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    SEEN.clear()
    return key


def test_if_a_key_is_valid_then_the_app_gets_its_principal(auth: Authenticator, key: str) -> None:
    client = Client(ApiKeyMiddleware(app, authenticator=auth))
    assert client.get("/", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/").status_code == 200
    assert [principal and principal.user_id for principal in SEEN] == ["user_1", None]


def test_if_the_rules_protect_a_prefix_then_any_valid_key_passes_and_none_is_refused(
    auth: Authenticator, key: str
) -> None:
    rules = Rules(protect=["/api/"], public=["/api/health"])
    client = Client(ApiKeyMiddleware(app, authenticator=auth, rules=rules))
    assert client.get("/api/anything", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/api/anything").status_code == 401
    assert client.get("/api/health").status_code == 200
    assert client.get("/elsewhere").status_code == 200


def test_if_the_app_is_mounted_then_rules_match_the_path_it_sees(
    auth: Authenticator, key: str
) -> None:
    rules = Rules([("/teams/{team_id}/bookings", ["read:bookings"])])
    client = Client(ApiKeyMiddleware(app, authenticator=auth, rules=rules))
    environ = {"SCRIPT_NAME": "/v1"}
    refused = client.get(
        "/teams/team_2/bookings", headers={"X-API-Key": key}, environ_overrides=environ
    )
    assert refused.status_code == 403
    assert refused.headers["Content-Length"] == str(len(refused.data))


def test_if_the_path_is_percent_encoded_then_the_team_is_the_decoded_one(
    auth: Authenticator, key: str
) -> None:
    rules = Rules([("/teams/{team_id}/bookings", ["read:bookings"])])
    client = Client(ApiKeyMiddleware(app, authenticator=auth, rules=rules))
    assert client.get("/teams/team%5F1/bookings", headers={"X-API-Key": key}).status_code == 200


def test_if_authenticate_is_called_then_it_returns_the_principal_or_raises_a_fresh_refusal(
    auth: Authenticator, key: str
) -> None:
    middleware = ApiKeyMiddleware(app, authenticator=auth)
    principal = middleware.authenticate({"REQUEST_METHOD": "GET", "HTTP_X_API_KEY": key})
    assert principal is not None and principal.user_id == "user_1"
    assert middleware.authenticate({"REQUEST_METHOD": "GET"}) is None
    raised = []
    for _ in range(2):
        with pytest.raises(InvalidKeyError) as caught:
            middleware.authenticate({"REQUEST_METHOD": "GET", "HTTP_X_API_KEY": "sk_live_x"})
        raised.append(caught.value)
    assert raised[0] is not raised[1]  # never a shared instance
    public = ApiKeyMiddleware(app, authenticator=auth, rules=Rules(public=["/health"]))
    junk = {"REQUEST_METHOD": "GET", "PATH_INFO": "/health", "HTTP_X_API_KEY": "sk_live_x"}
    assert public.authenticate(junk) is None
