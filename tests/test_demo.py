"""The demo bookings API: its endpoints through a real client, its validation, its persistence,
and a running demo server that refuses a key revoked from the command line within a second."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from skaala_auth import KeyManager, SQLiteKeyStore
from skaala_auth.demo import (
    DEMO_SCOPES,
    DEMO_TEAM,
    RedactKeys,
    banner,
    cli_command,
    create_app,
    seed,
)
from skaala_auth.demo.bookings import SERVICES
from tests.test_cli import SCRIPT, run

BOOKING: dict[str, Any] = {
    "service_id": "svc_haircut",
    "start_time": "2030-01-31T10:00:00Z",
    "contact": {"name": "Ada Lovelace", "email": "Ada@Example.com", "phone": "+44 20 7946 0000"},
    "notes": "First visit",
}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "demo.db"


@pytest.fixture
def key(db: Path) -> str:
    store = SQLiteKeyStore(db)
    key = seed(KeyManager(store))
    store.close()
    assert key is not None
    return key


@pytest.fixture
def client(db: Path, key: str) -> Iterator[TestClient]:
    with TestClient(create_app(db)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


def test_if_seeded_twice_then_the_key_is_made_once(db: Path, key: str) -> None:
    store = SQLiteKeyStore(db)
    manager = KeyManager(store)
    assert seed(manager) is None
    [record] = manager.list_keys(team_id=DEMO_TEAM)
    assert sorted(record.scopes) == sorted(DEMO_SCOPES)
    assert manager.get_member(team_id=DEMO_TEAM, user_id=record.user_id).role == "owner"  # type: ignore[union-attr]
    store.close()


def test_if_health_is_asked_then_it_answers_without_a_key(client: TestClient) -> None:
    del client.headers["Authorization"]
    assert client.get("/health").json() == {"status": "ok"}
    assert "endpoints" in client.get("/").json()


def test_if_services_are_listed_then_ids_names_and_prices(client: TestClient) -> None:
    response = client.get("/api/v1/services")
    assert response.status_code == 200
    data = response.json()["data"]
    assert {service["id"] for service in data} == {service[0] for service in SERVICES}
    assert all(s["id"].startswith("svc_") and s["name"] and "price" in s for s in data)


def test_if_a_booking_is_created_then_it_is_listed_with_its_contact(client: TestClient) -> None:
    assert client.get("/api/v1/bookings").json() == {"data": [], "meta": {"total": 0}}
    created = client.post("/api/v1/bookings", json=BOOKING)
    assert created.status_code == 201
    booking = created.json()["data"]
    assert re.fullmatch(r"bk_[0-9A-Za-z]{16}", booking["id"])
    assert booking["service_id"] == "svc_haircut"
    assert booking["start_time"] == "2030-01-31T10:00:00Z"
    assert booking["contact"]["email"] == "ada@example.com"
    assert booking["team_id"] == DEMO_TEAM and booking["status"] == "confirmed"
    listed = client.get("/api/v1/bookings").json()
    assert listed == {"data": [booking], "meta": {"total": 1}}
    assert client.get(f"/api/v1/teams/{DEMO_TEAM}/bookings").json() == listed
    contacts = client.get("/api/v1/contacts").json()
    assert contacts["meta"]["total"] == 1
    assert contacts["data"][0]["id"] == booking["contact"]["id"]


def test_if_the_same_contact_books_again_then_one_contact(client: TestClient) -> None:
    client.post("/api/v1/bookings", json=BOOKING)
    again = {**BOOKING, "contact": {"name": "Ada King", "email": "ada@example.com"}}
    response = client.post(f"/api/v1/teams/{DEMO_TEAM}/bookings", json=again)
    assert response.status_code == 201
    contacts = client.get("/api/v1/contacts").json()["data"]
    assert [(c["name"], c["phone"]) for c in contacts] == [("Ada King", "+44 20 7946 0000")]


def test_if_the_app_restarts_then_bookings_persist_in_the_same_file(
    db: Path, key: str, client: TestClient
) -> None:
    booking = client.post("/api/v1/bookings", json=BOOKING).json()["data"]
    with TestClient(create_app(db)) as again:
        listed = again.get("/api/v1/bookings", headers={"X-API-Key": key}).json()
    assert listed["data"] == [booking]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"service_id": "svc_nope"}, "service_id", id="unknown-service"),
        pytest.param({"service_id": None}, "service_id", id="missing-service"),
        pytest.param({"service_id": 7}, "service_id", id="service-not-a-string"),
        pytest.param({"start_time": "tomorrow"}, "start_time", id="not-iso"),
        pytest.param({"start_time": "2030-01-31T10:00:00"}, "start_time", id="naive-time"),
        pytest.param({"contact": None}, "contact", id="missing-contact"),
        pytest.param({"contact": "Ada"}, "contact", id="contact-not-an-object"),
        pytest.param({"contact": {"email": "a@b.co"}}, "contact.name", id="missing-name"),
        pytest.param({"contact": {"name": " ", "email": "a@b.co"}}, "contact.name", id="blank"),
        pytest.param({"contact": {"name": "A", "email": "nope"}}, "contact.email", id="email"),
        pytest.param(
            {"contact": {"name": "A", "email": "a@b.co", "phone": "call me"}},
            "contact.phone",
            id="phone",
        ),
        pytest.param(
            {"contact": {"name": "A", "email": "a@b.co", "fax": "1"}}, "contact.fax", id="extra"
        ),
        pytest.param({"notes": "x" * 2001}, "notes", id="notes-too-long"),
        pytest.param({"price": 0}, "price", id="unknown-field"),
    ],
)
def test_if_a_booking_is_invalid_then_422_naming_the_field(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    body = {key: value for key, value in {**BOOKING, **change}.items() if value is not None}
    response = client.post("/api/v1/bookings", json=body)
    assert response.status_code == 422
    answer = response.json()
    assert answer["error"] == "validation_error"
    assert field in [detail["field"] for detail in answer["details"]]
    assert client.get("/api/v1/bookings").json()["meta"]["total"] == 0


@pytest.mark.parametrize(
    "body", [b"{", b"[]", b'"text"', b"null"], ids=["broken", "array", "string", "null"]
)
def test_if_the_body_is_not_a_json_object_then_422(client: TestClient, body: bytes) -> None:
    response = client.post(
        "/api/v1/bookings", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


def test_if_the_body_is_too_large_then_413(client: TestClient) -> None:
    response = client.post("/api/v1/bookings", content=b" " * (65 * 1024))
    assert response.status_code == 413


def test_if_no_key_or_a_bad_key_then_the_contract_answers(client: TestClient) -> None:
    del client.headers["Authorization"]
    for path in ("/api/v1/bookings", "/api/v1/services", "/api/v1/contacts", "/api/v1/nope"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert client.get("/api/v1/bookings", headers={"X-API-Key": "sk_live_x"}).status_code == 401


def test_if_another_team_is_in_the_path_then_403(client: TestClient) -> None:
    response = client.post("/api/v1/teams/team_other/bookings", json=BOOKING)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_if_a_key_lacks_a_scope_then_403(db: Path, key: str, client: TestClient) -> None:
    store = SQLiteKeyStore(db)
    reader, _ = KeyManager(store).create_key(
        team_id=DEMO_TEAM, user_id="user_demo", scopes=["read:bookings"]
    )
    store.close()
    del client.headers["Authorization"]
    headers = {"X-API-Key": reader}
    assert client.get("/api/v1/bookings", headers=headers).status_code == 200
    for answer in (
        client.post("/api/v1/bookings", json=BOOKING, headers=headers),
        client.get("/api/v1/services", headers=headers),
        client.get("/api/v1/contacts", headers=headers),
    ):
        assert answer.status_code == 403


def test_if_a_route_is_unknown_or_a_method_wrong_then_json(client: TestClient) -> None:
    assert client.get("/nope").json() == {"error": "not_found", "message": "Not Found"}
    wrong = client.delete("/api/v1/bookings")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert "GET" in wrong.headers["allow"]


def test_if_the_banner_is_printed_on_first_start_then_key_and_curl_commands(
    db: Path, key: str
) -> None:
    text = banner(db, "http://127.0.0.1:8000", key)
    assert text.count(key) == 2  # the key, and the export line the commands use
    assert "curl -s http://127.0.0.1:8000/health" in text
    assert "Authorization: Bearer $SKAALA_DEMO_KEY" in text
    assert "-X POST http://127.0.0.1:8000/api/v1/bookings" in text
    payload = re.search(r"-d '(\{.*\})'", text)
    assert payload is not None and json.loads(payload.group(1))["service_id"] == "svc_haircut"
    later = banner(db, "http://127.0.0.1:8000", None)
    assert "sk_live_" not in later and "keys create --team team_demo" in later


def test_if_a_log_line_carries_a_key_then_it_is_redacted() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s"', ("1.2.3.4", "GET",
        "/api/v1/bookings?api_key=sk_live_abcdef0123456789"), None,
    )  # fmt: skip
    assert RedactKeys().filter(record)
    assert "sk_live_abc" not in record.getMessage() and "sk_[redacted]" in record.getMessage()


@pytest.mark.parametrize(
    "written",
    [
        pytest.param("%73k_live_", id="first-letter"),
        pytest.param("sk%5Flive%5F", id="underscores"),
        pytest.param("%73%6B%5F%6C%69%76%65%5F", id="all-encoded"),
        pytest.param("%2573k_live_", id="encoded-twice"),
        pytest.param("sk_test_", id="plain-test"),
    ],
)
def test_if_a_log_line_carries_a_percent_encoded_key_then_it_is_redacted(written: str) -> None:
    secret = "abcdef0123456789ABCDEF0123456789ghijkl"
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s"', ("1.2.3.4", "GET",
        f"/api/v1/bookings?api_key={written}{secret}"), None,
    )  # fmt: skip
    assert RedactKeys().filter(record)
    line = record.getMessage()
    assert secret[:12] not in line and "sk_[redacted]" in line
    assert "/api/v1/bookings?api_key=" in line


def test_if_a_log_line_has_no_key_then_it_is_kept_as_it_was() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, "%s", ("/search?q=a%20b",), None
    )
    assert RedactKeys().filter(record) and record.getMessage() == "/search?q=a%20b"


def test_if_the_cli_is_not_on_path_then_the_banner_gives_its_full_path(
    db: Path, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `make demo`, `skaala-auth` is .venv/bin/skaala-auth, not on PATH."""
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    script = venv / "skaala-auth"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    assert cli_command(str(script)) == str(script)
    text = banner(db, "http://127.0.0.1:8000", key, command=cli_command(str(script)))
    assert f"{script} --db {db} keys list --team {DEMO_TEAM}" in text
    later = banner(db, "http://127.0.0.1:8000", None, command=cli_command(str(script)))
    assert f"{script} --db {db} keys create" in later
    monkeypatch.setenv("PATH", str(venv))
    assert cli_command(str(script)) == "skaala-auth"


def test_if_run_as_a_module_then_the_banner_gives_a_command_that_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    command = cli_command("/x/skaala_auth/__main__.py")
    assert command.endswith(("/skaala-auth", " -m skaala_auth")) and command != "skaala-auth"


# -- the demo server, as `skaala-auth demo` runs it -------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed")
def test_if_the_cli_revokes_a_key_then_the_running_demo_refuses_it_within_a_second(
    tmp_path: Path,
) -> None:
    db = tmp_path / "live.db"
    port = _free_port()
    server = subprocess.Popen(
        [str(SCRIPT), "--db", str(db), "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while not any("sk_live_" in line for line in lines) and time.monotonic() < deadline:
            line = server.stdout.readline()
            assert line, f"the demo stopped: {server.stderr.read() if server.stderr else ''}"
            lines.append(line)
        key = next(word for line in lines for word in line.split() if word.startswith("sk_live_"))
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=5) as http:
            while True:
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the demo did not start"
                    time.sleep(0.05)
            assert http.get("/api/v1/bookings").status_code == 200
            [record] = json.loads(run("keys", "list", "--team", DEMO_TEAM, "--json", db=db).stdout)
            revoked = run("keys", "revoke", record["id"], db=db)
            assert revoked.returncode == 0, revoked.stderr
            revoked_at = time.monotonic()
            while (status := http.get("/api/v1/bookings").status_code) == 200:
                assert time.monotonic() - revoked_at < 1.0, "still accepted after one second"
                time.sleep(0.02)
            assert status == 401
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down gracefully
        try:
            _, stderr = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server fails the test
            server.kill()
            raise
    assert server.returncode == 0  # stopped with Ctrl-C after a graceful shutdown
    assert "Application shutdown complete" in stderr
    for stored in tmp_path.glob("live.db*"):  # only a digest is stored, never the key
        assert key.encode() not in stored.read_bytes()
