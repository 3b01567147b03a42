"""The demo: a small bookings API protected by API keys, and the key-management page for it,
run by ``skaala-auth demo``.

On first start it creates a team, its owner and a key, prints the key (once) and ready-to-paste
``curl`` commands, then serves the API with uvicorn on 127.0.0.1:8000, with the dashboard at
``/dashboard?team=team_demo``, signed in to with one click by a DEMO-only local issuer
(:mod:`skaala_auth.demo.issuer`, not Stack Auth). Keys, bookings and
contacts live in one SQLite file (``./skaala_auth.db`` by default), so the CLI manages the
demo's keys while it runs: a key revoked with ``skaala-auth keys revoke`` is refused within a
second. With ``--dsn`` the keys live in PostgreSQL instead (and the bookings in memory).

Use it in your own tests with :func:`create_app` and :func:`seed`.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, TextIO
from urllib.parse import unquote

from ..config import open_store
from ..manager import KeyManager
from ..stores.base import KeyStore
from ..stores.sqlite import SQLiteKeyStore
from .app import DASHBOARD_PATH, DEMO_SCOPES, DEMO_TEAM, DEMO_USER, create_app, seed

__all__ = [
    "DASHBOARD_PATH",
    "DEMO_SCOPES",
    "DEMO_TEAM",
    "DEMO_USER",
    "RedactKeys",
    "banner",
    "cli_command",
    "create_app",
    "redact_keys",
    "run",
    "seed",
]

_ANY_KEY: Final = re.compile(r"sk_(?:live|test)_[0-9A-Za-z]+")
_REDACTED: Final = "sk_[redacted]"
#: How many layers of percent-encoding are taken off (``%2573`` is ``%73`` is ``s``).
_DECODE_ROUNDS: Final = 3


def redact_keys(text: str) -> str:
    """``text`` with every key blanked out, also one written percent-encoded (``%73k_live_…``,
    ``sk%5Flive%5F…``, or encoded twice): such a text is shown decoded, then redacted.

    .. versionadded:: 0.1.0
    """
    decoded = text
    for _ in range(_DECODE_ROUNDS):
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    if decoded != text and _ANY_KEY.search(decoded):
        return _ANY_KEY.sub(_REDACTED, decoded)
    return _ANY_KEY.sub(_REDACTED, text)


class RedactKeys(logging.Filter):
    """Blank out anything that looks like a key in a log record (uvicorn's access log shows
    query strings, and a client may put a key in one: it is refused, but the line is logged),
    percent-encoded or not.

    .. versionadded:: 0.1.0
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_keys(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_keys(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def cli_command(argv0: str | None = None) -> str:
    """How to run the ``skaala-auth`` that is running now, from another terminal: ``skaala-auth``
    when that is the one on ``PATH``, else its full path (``make demo`` runs
    ``.venv/bin/skaala-auth``, which is not on ``PATH``), else ``python -m skaala_auth`` with
    this interpreter.

    Args:
        argv0: the program path (default ``sys.argv[0]``).

    .. versionadded:: 0.1.0
    """
    script = Path(sys.argv[0] if argv0 is None else argv0)
    on_path = shutil.which("skaala-auth")
    if script.name in ("skaala-auth", "skaala-auth.exe") and script.exists():
        if on_path is not None and Path(on_path).resolve() == script.resolve():
            return "skaala-auth"
        return shlex.quote(str(script.resolve()))
    beside = Path(sys.executable).parent / "skaala-auth"
    if beside.exists():  # this interpreter's own console script
        if on_path is not None and Path(on_path).resolve() == beside.resolve():
            return "skaala-auth"
        return shlex.quote(str(beside))
    return f"{shlex.quote(sys.executable)} -m skaala_auth"


def banner(
    db_path: Path,
    url: str,
    key: str | None,
    *,
    command: str = "skaala-auth",
    dsn: str | None = None,
    schema: str | None = None,
) -> str:
    """What the demo prints at start: where it runs and, on first start, the key and commands.

    Args:
        db_path: the demo's database.
        url: where it listens.
        key: the key made on first start, or ``None``.
        command: how to run the CLI from another terminal (see :func:`cli_command`).
        dsn: the PostgreSQL database of the keys, when they are kept there (the bookings are
            then kept in memory). A DSN with a password is not printed: the commands say
            ``--dsn "$SKAALA_AUTH_DSN"`` instead.
        schema: the PostgreSQL schema of the keys, if not the default.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.4.0
       ``dsn`` and ``schema``.
    """
    if dsn is None:
        manage = f"{command} --db {shlex.quote(str(db_path))}"
        where = str(db_path)
    else:
        shown = '"$SKAALA_AUTH_DSN"' if _has_password(dsn) else shlex.quote(dsn)
        manage = f"{command} --dsn {shown}"
        if schema is not None:
            manage += f" --schema {shlex.quote(schema)}"
        where = f"PostgreSQL {shown}, schema {schema or 'skaala_auth'} (bookings in memory)"
    lines = [
        "skaala_auth demo: a bookings API protected by API keys",
        f"  database:  {where}",
        f"  listening: {url}  (Ctrl-C to stop)",
        f"  dashboard: {url}{DASHBOARD_PATH}?team={DEMO_TEAM}",
        f"             signed in with the DEMO sign-in at {url}/demo/sign-in (not Stack Auth:",
        "             a local issuer with its own key, made at start, for this demo only)",
        "",
    ]
    if key is None:
        return "\n".join(
            [
                *lines,
                f"The demo key of team {DEMO_TEAM} was printed when this database was first used",
                "(only its digest is stored). Make another one with:",
                "",
                f"  {manage} keys create --team {DEMO_TEAM} --user {DEMO_USER} "
                + " ".join(f"--scope {scope}" for scope in DEMO_SCOPES),
                "",
            ]
        )
    start = (datetime.now(UTC) + timedelta(days=1)).replace(hour=10, minute=0, second=0)
    booking = (
        '{"service_id": "svc_haircut", '
        f'"start_time": "{start.strftime("%Y-%m-%dT%H:%M:%SZ")}", '
        '"contact": {"name": "Ada Lovelace", "email": "ada@example.com", '
        '"phone": "+44 20 7946 0000"}, "notes": "First visit"}'
    )
    auth = '-H "Authorization: Bearer $SKAALA_DEMO_KEY"'
    return "\n".join(
        [
            *lines,
            f"First start: created team {DEMO_TEAM}, its owner {DEMO_USER} and an API key with",
            f"the scopes {' '.join(DEMO_SCOPES)}. It is shown only this once:",
            "",
            f"    {key}",
            "",
            "Try it from another terminal:",
            "",
            f"  export SKAALA_DEMO_KEY='{key}'",
            f"  curl -s {url}/health",
            f"  curl -s {url}/api/v1/services {auth}",
            f"  curl -s -X POST {url}/api/v1/bookings {auth} \\",
            f"       -H 'Content-Type: application/json' -d '{booking}'",
            f'  curl -s {url}/api/v1/bookings -H "X-API-Key: $SKAALA_DEMO_KEY"',
            f"  curl -s {url}/api/v1/teams/{DEMO_TEAM}/bookings {auth}",
            f"  curl -s {url}/api/v1/contacts {auth}",
            f"  curl -si {url}/api/v1/bookings        # no key: 401",
            "",
            f"Manage keys: {manage} keys list --team {DEMO_TEAM}",
            "",
        ]
    )


def _has_password(dsn: str) -> bool:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return bool(conninfo_to_dict(dsn).get("password"))
    except Exception:  # not parsable: treat it as secret
        return True


def _url(host: str, port: int) -> str:
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - only to print a URL that works
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise OSError(
                f"cannot listen on {host}:{port} ({error.strerror}): try --port"
            ) from None


def run(
    db_path: str | os.PathLike[str] = "skaala_auth.db",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    pepper: str | bytes | None = None,
    out: TextIO | None = None,
    dsn: str | None = None,
    schema: str | None = None,
) -> None:
    """Seed the database on first start, print the banner and serve the demo until Ctrl-C.

    With ``dsn``, the keys are kept in that PostgreSQL database (in ``schema``) and the bookings
    in memory; ``db_path`` is not used.

    Raises:
        ImportError: uvicorn is not installed (the ``demo`` extra), or psycopg (``dsn``).
        OSError: the port is taken.
        ConfigurationError: ``dsn`` is not a valid connection string.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.4.0
       ``dsn`` and ``schema``.
    """
    try:
        import uvicorn
    except ImportError as error:
        raise ImportError("the demo needs uvicorn: pip install 'skaala-auth[demo]'") from error
    path = Path(db_path).resolve() if dsn is None else Path(":memory:")
    _check_port(host, port)
    store: KeyStore = SQLiteKeyStore(path) if dsn is None else open_store(dsn=dsn, schema=schema)
    try:
        key = seed(KeyManager(store, pepper=pepper))
    finally:
        store.close()
    app = create_app(path, pepper=pepper, dsn=dsn, schema=schema)
    config = uvicorn.Config(app, host=host, port=port, lifespan="on", log_level="info")
    logging.getLogger("uvicorn.access").addFilter(RedactKeys())
    stream = out if out is not None else sys.stdout
    stream.write(banner(path, _url(host, port), key, command=cli_command(), dsn=dsn, schema=schema))
    stream.flush()
    uvicorn.Server(config).run()
