"""The demo's one-click sign-in (DEMO ONLY, not Stack Auth): it signs in the demo owner through
the real session path, refuses cross-site posts, and nothing outside skaala_auth.demo can
switch it on."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import skaala_auth
from skaala_auth import KeyManager, SQLiteKeyStore
from skaala_auth.demo import DEMO_TEAM, DEMO_USER, banner, create_app, seed
from skaala_auth.demo.issuer import DEMO_ISSUER, DEMO_PROJECT, DemoIssuer
from skaala_auth.session import StackAuthVerifier
from skaala_auth.testing import SessionKit

ORIGIN = "http://testserver"
KEYS = f"/api/v1/teams/{DEMO_TEAM}/api-keys"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    db = tmp_path / "demo.db"
    store = SQLiteKeyStore(db)
    seed(KeyManager(store))
    store.close()
    with TestClient(create_app(db), base_url=ORIGIN) as client:
        yield client


def _sign_in(client: TestClient) -> None:
    answer = client.post("/demo/sign-in", headers={"Origin": ORIGIN}, follow_redirects=False)
    assert answer.status_code == 303


def test_if_the_sign_in_page_is_asked_then_it_says_demo_loudly(client: TestClient) -> None:
    page = client.get("/demo/sign-in")
    assert page.status_code == 200
    assert "DEMO sign-in — not Stack Auth" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-frame-options"] == "DENY"
    assert 'action="/demo/sign-in"' in page.text and DEMO_USER in page.text


@pytest.mark.shows_key("response")  # the key the signed-in owner creates
def test_if_signed_in_then_the_cookie_is_a_session_for_the_owner(client: TestClient) -> None:
    answer = client.post("/demo/sign-in", headers={"Origin": ORIGIN}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/dashboard?team={DEMO_TEAM}"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("stack-access-token=ey")
    for attribute in ("HttpOnly", "Max-Age=3600", "Path=/", "SameSite=lax"):
        assert attribute in cookie
    listed = client.get(KEYS)  # the management API: owners and admins only
    assert listed.status_code == 200 and len(listed.json()["api_keys"]) == 1
    made = client.post(KEYS, json={"name": "CI", "scopes": ["read:bookings"]},
                       headers={"Origin": ORIGIN})  # fmt: skip
    assert made.status_code == 201
    client.cookies.clear()
    assert client.get(KEYS).status_code == 401


@pytest.mark.parametrize("origin", [None, "https://evil.example", "http://testserver:8080"])
def test_if_the_sign_in_comes_from_elsewhere_then_403_and_no_cookie(
    client: TestClient, origin: str | None
) -> None:
    """Another site must not sign a visitor in to the demo (login CSRF)."""
    headers = {} if origin is None else {"Origin": origin}
    answer = client.post("/demo/sign-in", headers=headers, follow_redirects=False)
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
    assert client.get(KEYS).status_code == 401


def test_if_a_signed_in_change_comes_from_another_site_then_403(client: TestClient) -> None:
    """The session goes through the real CSRF check of the management API."""
    _sign_in(client)
    forged = client.post(KEYS, json={"name": "x", "scopes": ["read:bookings"]},
                         headers={"Origin": "https://evil.example"})  # fmt: skip
    assert forged.status_code == 403
    assert len(client.get(KEYS).json()["api_keys"]) == 1


def test_if_signed_out_then_the_cookie_is_gone(client: TestClient) -> None:
    _sign_in(client)
    forged = client.post("/demo/sign-out", headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and client.get(KEYS).status_code == 200
    answer = client.post("/demo/sign-out", headers={"Origin": ORIGIN}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/demo/sign-in"
    assert 'stack-access-token=""' in answer.headers["set-cookie"]
    assert client.get(KEYS).status_code == 401


def test_if_the_jwks_is_asked_then_only_the_public_key(client: TestClient) -> None:
    [key] = client.get("/demo/jwks.json").json()["keys"]
    assert key["kty"] == "EC" and key["alg"] == "ES256" and key["kid"].startswith("demo-")
    assert "d" not in key


def test_if_a_demo_token_meets_another_verifier_then_it_is_refused() -> None:
    """The demo's key is made at start and trusted only by the demo's own verifier."""
    issuer = DemoIssuer()
    token = issuer.mint(DEMO_USER)
    assert issuer.verifier().verify(token).user_id == DEMO_USER
    other = StackAuthVerifier(project_id=DEMO_PROJECT, jwks=SessionKit().jwks,
                              issuers=[DEMO_ISSUER])  # fmt: skip
    assert other.decode(token, now=issuer.clock()).reason.value == "unknown_signing_key"  # type: ignore[union-attr]
    assert DemoIssuer().verifier().decode(token, now=issuer.clock()).status_code == 401  # type: ignore[union-attr]


def test_if_the_library_is_read_then_only_the_demo_uses_the_demo_issuer() -> None:
    """It cannot be switched on outside the demo: no module outside skaala_auth/demo imports
    it (the CLI's `demo` command imports the demo's `run`, nothing else), and no setting names
    it."""
    package = Path(skaala_auth.__file__).parent
    for path in package.rglob("*.py"):
        if path.is_relative_to(package / "demo"):
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(alias.name for alias in node.names)]
                if path.name == "cli.py" and names == ["demo", "run"]:
                    continue  # `skaala-auth demo` runs the whole demo
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(re.search(r"(^|\.)(demo|issuer|sign_in)\b", n) for n in names), path
    config = (package / "config.py").read_text("utf-8")
    assert "demo" not in config.lower() and "issuer." not in config


def test_if_the_demo_starts_then_the_banner_gives_the_dashboard(tmp_path: Path) -> None:
    text = banner(tmp_path / "d.db", "http://127.0.0.1:8000", None)
    assert f"dashboard: http://127.0.0.1:8000/dashboard?team={DEMO_TEAM}" in text
    assert "DEMO sign-in" in text and "not Stack Auth" in text
