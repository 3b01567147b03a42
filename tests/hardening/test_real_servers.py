"""The invariant through real servers: gunicorn (sync worker) and uvicorn (h11 and httptools)
processes on 127.0.0.1, serving the apps of tests/hardening/server_apps.py.

A protected handler runs only for a request whose principal the core granted for that
handler's scopes and team. Requests are sent with :mod:`http.client` (odd paths, lower-case
methods, repeated headers reach the server as written); every handler appends a line to a "ran
log" (which handler, the method it saw, the router-resolved team, the principal's key id), and
for each request the test checks:

- a handler ran ⇒ the request carried exactly one credential, a live key of the resolved team
  holding the handler's scopes for the method it saw, and that key is the principal;
- a CORS preflight never runs a protected handler;
- no 5xx; handler data (``BOOKINGS-OF-…``, ``X-Total-Count``) only with a logged run;
- a 401/403 (or a JSON 400) carries the contract body and headers.

All findings go into one list per server, asserted empty, so a failure reads as a report.
"""

from __future__ import annotations

import dataclasses
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from skaala_auth import KeyManager, SQLiteKeyStore
from tests.hardening.server_apps import DB_ENV, LOG_ENV, MARKER

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"  # the only address any server or request here uses
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 5.0

READ = frozenset({"read:bookings"})
WRITE = frozenset({"write:bookings"})
BOTH = READ | WRITE


def _rules_table(method: str) -> frozenset[str]:
    """What the drop-in table of server_apps._rules must demand: HEAD is GET, and a method the
    table does not list gets the union of the pattern's scopes."""
    upper = method.upper()
    if upper in ("GET", "HEAD"):
        return READ
    if upper == "POST":
        return WRITE
    return BOTH


# Handler name (as logged) -> method it saw -> scopes its principal must hold.
REQUIRED: dict[str, Callable[[str], frozenset[str]]] = {
    "flask_rules": _rules_table,
    "wsgi_rules": _rules_table,
    "django_rules": _rules_table,
    "starlette_rules": _rules_table,
    "flask_list": lambda method: READ,
    "flask_create": lambda method: WRITE,
    "django_list": lambda method: READ,
    "django_create": lambda method: WRITE,
    "starlette_list": lambda method: READ,
    "starlette_create": lambda method: WRITE,
    "fastapi_list": lambda method: READ,
    "fastapi_create": lambda method: WRITE,  # Security(RequireScopes(), scopes=[write])
    "fastapi_replace": lambda method: BOTH,  # Security(RequireScopes(read), scopes=[write])
    "fastapi_delete": lambda method: WRITE,  # dependencies=[Security(..., scopes=[write])]
}


# --- servers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    name: str
    server: str  # "gunicorn" | "uvicorn"
    factory: str
    needs: tuple[str, ...]
    bases: tuple[str, ...] = ("/api/v1/teams/{team}/bookings",)
    http: str | None = None  # uvicorn's --http

    @property
    def label(self) -> str:
        return f"{self.server}[{self.http or 'sync'}]:{self.factory}"


SPECS = [
    Spec("gunicorn-flask-rules", "gunicorn", "flask_rules_app", ("gunicorn", "flask")),
    Spec("gunicorn-flask-decorator", "gunicorn", "flask_decorator_app", ("gunicorn", "flask")),
    Spec("gunicorn-wsgi-rules", "gunicorn", "wsgi_rules_app", ("gunicorn", "werkzeug")),
    Spec(
        "gunicorn-django",
        "gunicorn",
        "django_app",
        ("gunicorn", "django"),
        bases=("/api/v1/teams/{team}/bookings", "/rules/v1/teams/{team}/bookings"),
    ),
    *(
        Spec(f"uvicorn-{http}-{short}", "uvicorn", factory, ("uvicorn", http, *needs), http=http)
        for http in ("h11", "httptools")
        for short, factory, needs in (
            ("starlette", "starlette_app", ("starlette",)),
            ("starlette-rules", "starlette_rules_app", ("starlette",)),
            ("fastapi", "fastapi_app", ("fastapi",)),
        )
    ),
]


def _missing(spec: Spec) -> list[str]:
    return [module for module in spec.needs if importlib.util.find_spec(module) is None]


@dataclass
class Server:
    spec: Spec
    port: int
    ran_log: Path
    output: Path
    process: subprocess.Popen[bytes]

    def output_tail(self) -> str:
        try:
            return self.output.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _command(spec: Spec, port: int) -> list[str]:
    if spec.server == "gunicorn":
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            "1",
            "--worker-class",
            "sync",
            "--timeout",
            "30",
            "--graceful-timeout",
            "2",
            "--log-level",
            "warning",
        ]
        import gunicorn.config

        names = {setting.name for setting in gunicorn.config.KNOWN_SETTINGS}
        if "control_socket_disable" in names:  # gunicorn >= 25: no shared ~/.gunicorn socket
            command.append("--no-control-socket")
        return [*command, f"tests.hardening.server_apps:{spec.factory}()"]
    assert spec.http is not None
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        f"tests.hardening.server_apps:{spec.factory}",
        "--host",
        HOST,
        "--port",
        str(port),
        "--http",
        spec.http,
        "--lifespan",
        "on",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def _start(spec: Spec, directory: Path, db: Path) -> Server:
    port = _free_port()
    ran_log = directory / f"{spec.name}.ran"
    ran_log.touch()
    output = directory / f"{spec.name}.out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        DB_ENV: str(db),
        LOG_ENV: str(ran_log),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the Django factory configures its own settings
    with output.open("wb") as sink:
        process = subprocess.Popen(
            _command(spec, port),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its workers
        )
    return Server(spec, port, ran_log, output, process)


def _ready(server: Server, deadline: float) -> str | None:
    """``None`` once ``GET /health`` answers 200, else why not (by ``deadline``)."""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"exited with {server.process.returncode}"
        connection = http.client.HTTPConnection(HOST, server.port, timeout=1)
        try:
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return None
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    return f"not ready in {START_TIMEOUT:.0f} s"


def _stop(server: Server) -> None:
    process = server.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group of this server only
            process.wait(timeout=5)


# --- keys and requests -----------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    name: str
    secret: str
    id: str
    team: str
    scopes: frozenset[str]
    live: bool


@dataclass(frozen=True)
class Cred:
    """A way of presenting credentials. ``key`` is set only when the request carries exactly
    one credential in a form the contract accepts: only such a request may reach a handler."""

    name: str
    headers: tuple[tuple[str, str], ...] = ()
    query: str = ""
    key: Key | None = None


@dataclass(frozen=True)
class Probe:
    id: int
    method: str
    target: str
    cred: Cred
    preflight: bool
    base: str
    variant: str

    def describe(self) -> str:
        extra = " +preflight headers" if self.preflight else ""
        return f"{self.method} {self._shown_target()} [{self.cred.name}{extra}]"

    def _shown_target(self) -> str:
        return self.target.split("api_key=")[0] + ("api_key=…" if "api_key=" in self.target else "")


@dataclass
class Answer:
    status: int | None
    headers: dict[str, str]
    body: bytes
    error: str | None = None


@dataclass(frozen=True)
class World:
    db: Path
    keys: dict[str, Key]
    creds: dict[str, Cred]


def _make_world(directory: Path) -> World:
    db = directory / "keys.db"
    store = SQLiteKeyStore(db)
    try:
        manager = KeyManager(store)
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        manager.add_member(team_id="team_2", user_id="user_2", role="owner")
        keys: dict[str, Key] = {}
        for name, team, user, scopes in (
            ("read", "team_1", "user_1", READ),
            ("write", "team_1", "user_1", BOTH),
            ("staff", "team_2", "user_2", frozenset({"read:staff"})),
            ("other", "team_2", "user_2", BOTH),
            ("revoked", "team_1", "user_1", BOTH),
        ):
            secret, record = manager.create_key(
                team_id=team, user_id=user, name=name, scopes=sorted(scopes)
            )
            keys[name] = Key(name, secret, record.id, team, scopes, live=True)
        manager.revoke_key(keys["revoked"].id)
    finally:
        store.close()
    keys["revoked"] = dataclasses.replace(keys["revoked"], live=False)

    def bearer(secret: str, separator: str = " ") -> tuple[str, str]:
        return ("Authorization", f"Bearer{separator}{secret}")

    read, write, revoked = keys["read"].secret, keys["write"].secret, keys["revoked"].secret
    junk = read[:-1] + ("A" if read[-1] != "A" else "B")  # a bad checksum
    in_query = f"?page=1;api_key={write}"
    creds = [
        Cred("no key"),
        Cred("read key (Bearer)", (bearer(read),), key=keys["read"]),
        Cred("read key (X-API-Key)", (("X-API-Key", read),), key=keys["read"]),
        Cred("read key (Bearer, 3 spaces)", (bearer(read, "   "),), key=keys["read"]),
        Cred("read+write key", (bearer(write),), key=keys["write"]),
        Cred("team_2 read:staff key", (("X-API-Key", keys["staff"].secret),), key=keys["staff"]),
        Cred("team_2 read+write key", (("X-API-Key", keys["other"].secret),), key=keys["other"]),
        Cred("revoked key", (bearer(revoked),), key=keys["revoked"]),
        Cred("junk key", (bearer(junk),)),
        Cred("Bearer\\t<read> + X-API-Key <write>", (bearer(read, "\t"), ("X-API-Key", write))),
        Cred("Authorization repeated", (bearer(write), bearer(write))),
        Cred("Bearer <write> extra", (bearer(f"{write} extra"),)),
        Cred("read key + ;api_key=<write> in query", (bearer(read),), query=in_query),
        Cred(";api_key=<write> in query only", query=in_query),
    ]
    return World(db, keys, {cred.name: cred for cred in creds})


METHODS = ["GET", "get", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PREFLIGHT", "FOO"]
ODD_METHODS = ["GET", "HEAD", "POST", "PUT", "OPTIONS", "PREFLIGHT"]
ODD_CREDS = [
    "no key",
    "read key (Bearer)",
    "read+write key",
    "team_2 read:staff key",
    "team_2 read+write key",
    "revoked key",
]


def _paths(base: str) -> list[tuple[str, str]]:
    """(variant, path) of one route template: the router-shaped oddities."""
    canonical = base.format(team="team_1")
    first, rest = canonical[1:].split("/", 1)
    return [
        ("team_2's path", base.format(team="team_2")),
        ("//", "/" + canonical),
        ("///", "//" + canonical),
        ("merged //", canonical.replace("/v1/", "//v1/")),
        ("trailing /", canonical + "/"),
        ("/./", "/." + canonical),
        ("..", base.format(team="team_2/../team_1")),
        ("percent-encoded", f"/%{ord(first[0]):02X}{first[1:]}/{rest}"),
        ("encoded team", base.format(team="team%5F1")),
        ("upper case", f"/{first.upper()}/{rest}"),
        ("absolute-form", f"http://{HOST}{canonical}"),  # a proxy-style request target
    ]


def _probes(spec: Spec, world: World) -> list[Probe]:
    probes: list[Probe] = []

    def add(method: str, path: str, cred: Cred, base: str, variant: str) -> None:
        preflight = method == "PREFLIGHT"
        probes.append(
            Probe(
                len(probes),
                "OPTIONS" if preflight else method,
                path + cred.query,
                cred,
                preflight,
                base,
                variant,
            )
        )

    for base in spec.bases:
        canonical = base.format(team="team_1")
        for method in METHODS:
            for cred in world.creds.values():
                add(method, canonical, cred, base, "canonical")
        for variant, path in _paths(base):
            for method in ODD_METHODS:
                for name in ODD_CREDS:
                    add(method, path, world.creds[name], base, variant)
    return probes


def _send(port: int, probe: Probe) -> Answer:
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        connection.putrequest(probe.method, probe.target, skip_accept_encoding=True)
        for name, value in probe.cred.headers:
            connection.putheader(name, value)
        if probe.preflight:
            connection.putheader("Origin", "https://app.example")
            connection.putheader("Access-Control-Request-Method", "GET")
            connection.putheader("Access-Control-Request-Headers", "authorization")
        if probe.method.upper() in ("POST", "PUT", "PATCH", "DELETE", "FOO"):
            connection.putheader("Content-Length", "0")
        connection.putheader("X-Probe", str(probe.id))
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, headers, body)
    except (OSError, http.client.HTTPException) as error:
        return Answer(None, {}, b"", f"{type(error).__name__}: {error}")
    finally:
        connection.close()


# --- the checks ------------------------------------------------------------------------------

CONTRACT_ERROR = {400: "invalid_request", 401: "unauthorized", 403: "forbidden"}
MISSING = {"error": "unauthorized", "message": "Missing API key"}
INVALID = {"error": "unauthorized", "message": "Invalid API key"}


@dataclass
class Report:
    spec: Spec
    sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def _check_run(probe: Probe, line: dict[str, object]) -> list[str]:
    """Why this logged run of a handler breaks the invariant (empty: it does not)."""
    handler, method = str(line["handler"]), str(line["method"])
    ran = (
        f"{handler} ran (saw {method} {line.get('path')}, team_id={line['team_id']},"
        f" principal={line['key_id']})"
    )
    if probe.preflight:
        return [f"{ran} for a CORS preflight"]
    key = probe.cred.key
    if key is None:
        return [f"{ran} without exactly one acceptable credential"]
    problems = []
    if not key.live:
        problems.append("the key is revoked")
    if line["team_id"] != key.team:
        problems.append(f"the key is {key.team}'s")
    required = REQUIRED[handler](method)
    if not required <= key.scopes:
        problems.append(f"the key lacks {', '.join(sorted(required - key.scopes))}")
    if line["key_id"] != key.id:
        problems.append("the principal is not the key sent")
    return [f"{ran}: {'; '.join(problems)}"] if problems else []


def _check_answer(probe: Probe, answer: Answer) -> list[str]:
    status = answer.status
    if status is None:
        return []  # the server closed the connection: nothing ran that the log would not show
    problems = []
    if status >= 500:
        problems.append(f"answered {status}: {answer.body[:200]!r}")
    json_type = answer.headers.get("content-type", "").startswith("application/json")
    ours = status in (401, 403) or (status == 400 and json_type)
    if ours:
        if answer.headers.get("cache-control") != "no-store":
            problems.append(f"{status} without Cache-Control: no-store")
        challenge = answer.headers.get("www-authenticate", "")
        if status != 403 and not challenge.startswith('Bearer realm="api"'):
            problems.append(f"{status} without the contract's WWW-Authenticate")
        if probe.method.upper() != "HEAD":
            try:
                body = json.loads(answer.body)
            except ValueError:
                body = None
            if (
                not isinstance(body, dict)
                or body.get("error") != CONTRACT_ERROR[status]
                or not isinstance(body.get("message"), str)
            ):
                problems.append(f"{status} without the contract body: {answer.body[:200]!r}")
    return problems


def _check_controls(probe: Probe, answer: Answer, ran: bool) -> list[str]:
    """A few requests whose answer the contract fixes: the suite is not passing by refusing
    (or 404-ing) everything, and the refusals are the documented ones."""
    if probe.variant != "canonical" or probe.preflight:
        return []
    method, cred = probe.method, probe.cred.name
    body = None
    if answer.body and answer.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(answer.body)
        except ValueError:
            body = None
    if (method, cred) in (("GET", "read key (Bearer)"), ("POST", "read+write key")):
        if not ran or answer.status not in (200, 201):
            return [f"control: expected the handler to run and 200/201, got {answer.status}"]
    if method == "GET" and cred == "no key" and (answer.status, body) != (401, MISSING):
        return [f"control: expected 401 Missing API key, got {answer.status} {answer.body!r}"]
    if (
        method == "GET"
        and cred in ("revoked key", "junk key")
        and (answer.status, body)
        != (
            401,
            INVALID,
        )
    ):
        return [f"control: expected 401 Invalid API key, got {answer.status} {answer.body!r}"]
    if method == "GET" and cred.startswith(("Bearer\\t", "Authorization repeated", "read key +")):
        if answer.status != 400 or not body or body.get("error") != "invalid_request":
            return [f"control: expected 400 invalid_request, got {answer.status} {answer.body!r}"]
    return []


def _run(server: Server, world: World, deadline: float) -> Report:
    report = Report(server.spec)
    probes = _probes(server.spec, world)
    answers: dict[int, Answer] = {}
    for probe in probes:
        if time.monotonic() > deadline:
            report.violations.append(f"time budget exceeded after {len(answers)} requests")
            break
        answers[probe.id] = _send(server.port, probe)
    report.sent = len(answers)
    runs: dict[int, list[dict[str, object]]] = {}
    for text in server.ran_log.read_text().splitlines():
        line = json.loads(text)
        probe_id = line.get("probe")
        if not (isinstance(probe_id, str) and probe_id.isdigit()) or int(probe_id) >= len(probes):
            report.violations.append(f"a handler ran for no request of this test: {line}")
            continue
        runs.setdefault(int(probe_id), []).append(line)
    by_id = {probe.id: probe for probe in probes}
    for probe_id, answer in answers.items():
        probe = by_id[probe_id]
        status = str(answer.status) if answer.error is None else "closed"
        report.statuses[status] = report.statuses.get(status, 0) + 1
        lines = runs.get(probe_id, [])
        problems: list[str] = []
        if len(lines) > 1:
            problems.append(f"{len(lines)} handler runs for one request")
        for line in lines:
            problems += _check_run(probe, line)
        problems += _check_answer(probe, answer)
        if not lines and (MARKER.encode() in answer.body or "x-total-count" in answer.headers):
            problems.append("handler data in the answer but no logged run")
        problems += _check_controls(probe, answer, bool(lines))
        where = f"{server.spec.label} {probe.describe()} -> {answer.status or answer.error}"
        report.violations += [f"{where}: {problem}" for problem in problems]
    return report


# --- fixtures and the test -------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return _make_world(tmp_path_factory.mktemp("real-servers"))


@pytest.fixture(scope="module")
def reports(world: World) -> dict[str, Report | str]:
    """Start every server that can run here (all at once), probe them all (one thread each),
    stop them all (whatever happened); ``str`` values are the reasons a server was not run."""
    outcome: dict[str, Report | str] = {}
    servers: list[Server] = []
    try:
        for spec in SPECS:
            missing = _missing(spec)
            if missing:
                outcome[spec.name] = f"not installed: {', '.join(missing)}"
            else:
                servers.append(_start(spec, world.db.parent, world.db))
        deadline = time.monotonic() + START_TIMEOUT
        running = []
        for index, server in enumerate(list(servers)):
            why = _ready(server, deadline)
            if why is not None and "already in use" in server.output_tail():
                # The free port was taken between our probe and the server's bind: once more.
                _stop(server)
                server = servers[index] = _start(server.spec, world.db.parent, world.db)
                why = _ready(server, time.monotonic() + START_TIMEOUT)
            if why is None:
                running.append(server)
            else:
                outcome[server.spec.name] = Report(
                    server.spec,
                    violations=[f"{server.spec.label} {why}:\n{server.output_tail()}"],
                )
        deadline = time.monotonic() + 90
        with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
            futures = {s.spec.name: pool.submit(_run, s, world, deadline) for s in running}
            for name, future in futures.items():
                outcome[name] = future.result(timeout=120)
    finally:
        for server in servers:
            _stop(server)
    return outcome


@pytest.mark.parametrize("name", [spec.name for spec in SPECS])
def test_a_protected_handler_runs_only_for_a_granted_request(
    name: str, reports: dict[str, Report | str]
) -> None:
    report = reports[name]
    if isinstance(report, str):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{report} (CI installs the dev extra: pip install -e '.[all,dev]')")
        pytest.skip(report)
    if report.violations:
        summary = f"{report.sent} requests, statuses {dict(sorted(report.statuses.items()))}"
        pytest.fail(
            f"{len(report.violations)} violations ({summary}):\n" + "\n".join(report.violations),
            pytrace=False,
        )
