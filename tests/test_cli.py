"""The ``skaala-auth`` command line: as a subprocess for the key life cycle, in process (``main``)
for every command's output and errors."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sqlite3
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from skaala_auth import KeyManager, SQLiteKeyStore
from skaala_auth.cli import main, parse_duration

SCRIPT = Path(sys.executable).parent / "skaala-auth"

#: ``keys create``, ``rotate`` and ``import`` print each new key once: the one-time display,
#: which the leak check (tests/leakcheck.py) allows in these tests' output, once per key, and
#: nowhere else.
shows_key = pytest.mark.shows_key("output")


def run(*args: str, stdin: str = "", db: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The console script as a user runs it (``python -m skaala_auth`` when not installed)."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "skaala_auth"]
    prefix = ["--db", str(db)] if db is not None else []
    return subprocess.run(
        [*command, *prefix, *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def cli(
    capsys: pytest.CaptureFixture[str], *args: str, stdin: str | None = None
) -> tuple[int, str, str]:
    """``main()`` in process: (exit status, stdout, stderr)."""
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        status = main(list(args))
    except SystemExit as exit_:  # argparse: --help, usage errors
        status = int(exit_.code or 0)
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "keys.db"
    store = SQLiteKeyStore(path)
    KeyManager(store).add_member(team_id="team_1", user_id="user_1", role="owner")
    store.close()
    return path


def create(capsys: pytest.CaptureFixture[str], db: Path, *scopes: str) -> dict[str, Any]:
    flags = [arg for scope in scopes or ("read:bookings",) for arg in ("--scope", scope)]
    status, out, _ = cli(
        capsys, "--db", str(db), "keys", "create", "--team", "team_1", "--user", "user_1",
        *flags, "--json",
    )  # fmt: skip
    assert status == 0
    document: dict[str, Any] = json.loads(out)
    return document


# -- the life cycle, as a subprocess ----------------------------------------------------------


@shows_key
def test_if_a_key_is_created_verified_and_revoked_then_verify_fails(tmp_path: Path) -> None:
    db = tmp_path / "life.db"
    assert run("init", db=db).returncode == 0
    added = run("members", "add", "--team", "t1", "--user", "u1", "--role", "owner", db=db)
    assert added.returncode == 0, added.stderr
    created = run(
        "keys", "create", "--team", "t1", "--user", "u1", "--scope", "read:bookings",
        "--scope", "write:bookings", "--name", "CI", "--expires-in", "90d", "--json", db=db,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    key = record["key"]
    assert key.startswith("sk_live_") and record["id"].startswith("key_")
    assert record["scopes"] == ["read:bookings", "write:bookings"]

    verified = run("keys", "verify", "--json", stdin=key + "\n", db=db)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["key_id"] == record["id"]

    revoked = run("keys", "revoke", record["id"], db=db)
    assert revoked.returncode == 0 and record["id"] in revoked.stdout

    refused = run("keys", "verify", stdin=key, db=db)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.strip() == "skaala-auth: refused (401): Invalid API key (revoked)"
    for output in (refused, revoked, verified):
        assert key not in output.stdout + output.stderr  # printed once, at creation only


def test_if_run_as_a_module_then_the_same_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "skaala_auth", "--db", str(tmp_path / "m.db"), "init"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "m.db" in result.stdout


# -- every command, in process ----------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["init"],
        ["keys"],
        ["keys", "create"],
        ["keys", "import"],
        ["keys", "list"],
        ["keys", "show"],
        ["keys", "revoke"],
        ["keys", "rotate"],
        ["keys", "verify"],
        ["members"],
        ["members", "add"],
        ["members", "remove"],
        ["members", "list"],
        ["demo"],
    ],
    ids=lambda command: " ".join(command) or "skaala-auth",
)
def test_if_help_is_asked_of_any_command_then_usage_and_exit_0(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    status, out, _ = cli(capsys, *command, "--help")
    assert status == 0
    assert out.startswith("usage: skaala-auth")


@shows_key
def test_if_keys_create_then_the_key_is_printed_once_with_the_record(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    status, out, err = cli(
        capsys, "--db", str(db), "keys", "create", "--team", "team_1", "--user", "user_1",
        "--scope", "read:bookings", "--name", "CI", "--expires-in", "1h30m",
    )  # fmt: skip
    assert (status, err) == (0, "")
    key = next(word for word in out.split() if word.startswith("sk_live_"))
    assert out.count(key) == 1
    assert "name:" in out and "CI" in out and "read:bookings" in out
    record = KeyManager(SQLiteKeyStore(db)).list_keys(team_id="team_1")[0]
    assert record.expires_at - record.created_at == timedelta(hours=1, minutes=30)


@shows_key
def test_if_keys_create_json_then_one_object_with_key_and_id(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    document = create(capsys, db)
    assert set(document) >= {"key", "id", "team_id", "user_id", "scopes", "expires_at", "status"}
    assert document["status"] == "active"


@shows_key
def test_if_global_json_is_given_before_the_command_then_json_too(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    create(capsys, db)
    status, out, _ = cli(capsys, "--db", str(db), "--json", "keys", "list", "--team", "team_1")
    assert status == 0 and len(json.loads(out)) == 1


@shows_key
def test_if_keys_list_show_rotate_then_the_records(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    first = create(capsys, db)
    status, out, _ = cli(capsys, "--db", str(db), "keys", "list", "--team", "team_1")
    assert status == 0 and first["id"] in out and "STATUS" in out and first["key"] not in out

    status, out, _ = cli(capsys, "--db", str(db), "keys", "show", first["id"], "--json")
    assert json.loads(out)["prefix"] == first["prefix"]

    status, out, _ = cli(
        capsys, "--db", str(db), "keys", "rotate", first["id"], "--grace", "0", "--json"
    )
    rotated = json.loads(out)
    assert status == 0 and rotated["rotated_from"] == first["id"]
    assert rotated["key"].startswith("sk_live_") and rotated["key"] != first["key"]
    status, out, _ = cli(capsys, "--db", str(db), "keys", "verify", stdin=rotated["key"])
    assert status == 0 and rotated["id"] in out
    status, _, err = cli(capsys, "--db", str(db), "keys", "verify", stdin=first["key"])
    assert status == 1 and "(expired)" in err

    status, out, _ = cli(capsys, "--db", str(db), "keys", "list", "--team", "nobody")
    assert status == 0 and "No keys" in out


@shows_key
def test_if_keys_verify_is_given_scopes_and_a_team_then_it_checks_them(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    key = create(capsys, db)["key"]
    base = ["--db", str(db), "keys", "verify"]
    status, _, err = cli(capsys, *base, "--scope", "write:bookings", stdin=key)
    assert status == 1 and "refused (403): Insufficient scopes" in err
    status, out, _ = cli(capsys, *base, "--team", "team_2", "--json", stdin=key)
    assert status == 1
    assert json.loads(out) == {
        "valid": False,
        "status": 403,
        "error": "forbidden",
        "message": "API key does not belong to this team",
        "reason": "team_mismatch",
    }
    status, out, _ = cli(capsys, *base, "--scope", "read:bookings", "--team", "team_1", stdin=key)
    assert status == 0 and "valid:" in out


@shows_key
def test_if_a_test_key_is_verified_then_only_with_accept_test_keys(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    status, out, _ = cli(
        capsys, "--db", str(db), "keys", "create", "--team", "team_1", "--user", "user_1",
        "--scope", "read:bookings", "--test", "--json",
    )  # fmt: skip
    key = json.loads(out)["key"]
    assert key.startswith("sk_test_")
    assert cli(capsys, "--db", str(db), "keys", "verify", stdin=key)[0] == 1
    assert cli(capsys, "--db", str(db), "keys", "verify", "--accept-test-keys", stdin=key)[0] == 0


def test_if_members_are_added_listed_and_removed_then_the_table_follows(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    base = ["--db", str(db), "members"]
    status, out, _ = cli(capsys, *base, "add", "--team", "team_1", "--user", "user_2")
    assert status == 0 and "user_2 is now member of team_1" in out
    status, out, _ = cli(capsys, *base, "add", "--team", "team_1", "--user", "user_2", "--role",
                         "admin", "--json")  # fmt: skip
    assert json.loads(out)["role"] == "admin"
    status, out, _ = cli(capsys, *base, "list", "--team", "team_1")
    assert "user_1" in out and "owner" in out and "admin" in out
    status, out, _ = cli(capsys, *base, "remove", "--team", "team_1", "--user", "user_2", "--json")
    assert json.loads(out) == {"team_id": "team_1", "user_id": "user_2", "removed": True}
    status, out, _ = cli(capsys, *base, "list", "--team", "team_9")
    assert "No members" in out
    status, out, _ = cli(capsys, *base, "list", "--team", "team_1", "--json")
    assert [m["user_id"] for m in json.loads(out)] == ["user_1"]


# -- errors: one line on stderr, non-zero, never a traceback ----------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "show", "key_nope"], "no key with id 'key_nope'"),
        (["keys", "revoke", "key_nope"], "no key with id 'key_nope'"),
        (
            ["keys", "create", "--team", "team_1", "--user", "user_9", "--scope", "read:calls"],
            "members add --team team_1 --user user_9",
        ),
        (
            ["keys", "create", "--team", "team_1", "--user", "user_1", "--scope", "read:nope"],
            "unknown scope(s): read:nope (known: read:bookings",
        ),
        (["members", "remove", "--team", "team_1", "--user", "user_9"], "'user_9' is not a member"),
        (["members", "add", "--team", "", "--user", "u"], "must not be empty"),
        (["keys", "verify"], "no key given"),
    ],
)
def test_if_a_command_fails_then_one_clear_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], db: Path, args: list[str], message: str
) -> None:
    status, out, err = cli(capsys, "--db", str(db), *args, stdin="")
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("skaala-auth: error: ")
    assert message in err


def test_if_the_database_is_missing_then_it_says_to_run_init(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, _, err = cli(capsys, "--db", str(tmp_path / "none.db"), "keys", "list", "--team", "t")
    assert status == 1 and "run 'skaala-auth --db" in err and "init' first" in err
    assert not (tmp_path / "none.db").exists()


def test_if_the_database_is_not_sqlite_then_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    status, _, err = cli(capsys, "--db", str(junk), "keys", "list", "--team", "t")
    assert status == 1 and err.count("\n") == 1 and "Traceback" not in err


def test_if_skaala_auth_db_is_set_then_it_is_the_default(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKAALA_AUTH_DB", str(tmp_path / "env.db"))
    assert cli(capsys, "init")[0] == 0
    assert (tmp_path / "env.db").exists()


def test_if_no_db_is_given_then_the_current_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SKAALA_AUTH_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    status, out, _ = cli(capsys, "init", "--json")
    assert status == 0 and json.loads(out)["database"] == str(tmp_path / "skaala_auth.db")


def test_if_a_schema_is_given_without_a_dsn_then_a_clear_error(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    status, _, err = cli(
        capsys, "--db", str(db), "--schema", "keys", "members", "list", "--team", "t"
    )
    assert status == 1 and "--schema names a PostgreSQL schema: use it with --dsn" in err


@shows_key
def test_if_a_key_is_passed_as_an_argument_then_refused_and_not_echoed(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    key = create(capsys, db)["key"]
    status, out, err = cli(capsys, "--db", str(db), "keys", "verify", key)
    assert status == 2 and key not in out + err and "sk_[redacted]" in err


def test_if_both_db_and_dsn_then_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "--db", "x.db", "--dsn", "postgresql://x", "init")[0] == 2


def test_if_the_demo_port_is_taken_then_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        status, _, err = cli(capsys, "--db", str(tmp_path / "d.db"), "demo", "--port", port)
    assert status == 1 and f"cannot listen on 127.0.0.1:{port}" in err
    assert not (tmp_path / "d.db").exists()  # nothing created, no key printed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("24h", timedelta(hours=24)),
        ("1h30m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
        ("45s", timedelta(seconds=45)),
        ("0", timedelta(0)),
        (" 3D ", timedelta(days=3)),
    ],
)
def test_if_a_duration_is_written_with_units_then_it_parses(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "90", "d", "1.5h", "-1d", "1y", "1h 30m"])
def test_if_a_duration_is_malformed_then_a_usage_error(
    capsys: pytest.CaptureFixture[str], db: Path, text: str
) -> None:
    status, _, err = cli(
        capsys, "--db", str(db), "keys", "create", "--team", "team_1", "--user", "user_1",
        "--scope", "read:bookings", f"--expires-in={text}",
    )  # fmt: skip
    assert status == 2 and "invalid duration" in err


# -- a key where an id belongs; finding a key by its value -----------------------------------


def _database_text(db: Path) -> bytes:
    """Every byte of the database and its WAL, as a leak check reads them."""
    return b"".join(path.read_bytes() for path in db.parent.glob(db.name + "*"))


def _changes(db: Path) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT * FROM changes").fetchall()


@pytest.mark.parametrize("command", ["show", "revoke", "rotate"])
@shows_key
def test_if_a_key_is_given_as_the_key_id_then_refused_not_echoed_and_not_stored(
    capsys: pytest.CaptureFixture[str], db: Path, command: str
) -> None:
    created = create(capsys, db)
    key = created["key"]
    before = _changes(db)
    status, out, err = cli(capsys, "--db", str(db), "keys", command, key)
    assert status == 2 and out == ""
    assert "is an API key, not an id" in err and "--key-stdin" in err
    assert key not in err and key[8:24] not in err
    assert _changes(db) == before
    assert key.encode() not in _database_text(db)
    status, out, _ = cli(capsys, "--db", str(db), "keys", "show", created["id"], "--json")
    assert status == 0 and json.loads(out)["status"] == "active"


@pytest.mark.parametrize("option", ["--team", "--user"])
@shows_key
def test_if_a_key_is_given_as_a_member_id_then_refused_and_not_stored(
    capsys: pytest.CaptureFixture[str], db: Path, option: str
) -> None:
    key = create(capsys, db)["key"]
    ids = {"--team": "team_2", "--user": "user_2", option: key}
    args = [arg for pair in ids.items() for arg in pair]
    status, out, err = cli(capsys, "--db", str(db), "members", "add", *args)
    assert status == 2 and out == ""
    assert f"{option} is an API key" in err and key not in err
    assert key.encode() not in _database_text(db)


@shows_key
def test_if_a_key_is_given_as_a_name_then_refused(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    key = create(capsys, db)["key"]
    status, _, err = cli(
        capsys, "--db", str(db), "keys", "create", "--team", "team_1", "--user", "user_1",
        "--scope", "read:calls", "--name", f"copy of {key}",
    )  # fmt: skip
    assert status == 2 and "--name is an API key" in err and key not in err


@shows_key
def test_if_a_key_found_in_a_log_is_piped_to_revoke_then_it_is_revoked(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    created = create(capsys, db)
    key = created["key"]
    status, out, err = cli(capsys, "--db", str(db), "keys", "show", "--key-stdin", stdin=key)
    assert status == 0 and created["id"] in out and key not in out + err
    status, out, err = cli(
        capsys, "--db", str(db), "keys", "revoke", "--key-stdin", "--json", stdin=key + "\n"
    )
    assert status == 0 and key not in out + err
    document = json.loads(out)
    assert document["id"] == created["id"] and document["status"] == "revoked"
    status, _, err = cli(capsys, "--db", str(db), "keys", "verify", stdin=key)
    assert status == 1 and "(revoked)" in err


@shows_key
def test_if_the_service_has_a_pepper_then_revoke_by_key_finds_the_key_with_it(
    capsys: pytest.CaptureFixture[str], db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKAALA_AUTH_PEPPER", "p" * 16)
    key = create(capsys, db)["key"]
    status, out, _ = cli(capsys, "--db", str(db), "keys", "revoke", "--key-stdin", stdin=key)
    assert status == 0 and out.startswith("Revoked key_")
    monkeypatch.delenv("SKAALA_AUTH_PEPPER")
    status, _, err = cli(capsys, "--db", str(db), "keys", "show", "--key-stdin", stdin=key)
    assert status == 1 and "no key in this store matches" in err and key not in err


@pytest.mark.parametrize(
    ("args", "stdin", "status", "message"),
    [
        pytest.param([], "", 2, "give a key id (key_…) or --key-stdin", id="neither"),
        pytest.param(["key_x", "--key-stdin"], "", 2, "and not both", id="both"),
        pytest.param(["--key-stdin"], "", 1, "no key given", id="empty-stdin"),
        pytest.param(["--key-stdin"], "sk_live_short\n", 1, "not a skaala_auth key", id="junk"),
    ],
)
def test_if_revoke_is_not_given_exactly_one_key_then_a_clear_error(
    capsys: pytest.CaptureFixture[str],
    db: Path,
    args: list[str],
    stdin: str,
    status: int,
    message: str,
) -> None:
    before = _changes(db)
    result = cli(capsys, "--db", str(db), "keys", "revoke", *args, stdin=stdin)
    assert result[0] == status and message in result[2] and "sk_live_short" not in result[2]
    assert _changes(db) == before


def test_if_an_unknown_id_is_revoked_then_exit_1_and_nothing_written(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    before = _changes(db)
    status, _, err = cli(capsys, "--db", str(db), "keys", "revoke", "key_404")
    assert status == 1 and "no key with id 'key_404'" in err
    assert _changes(db) == before


def test_if_the_store_options_come_after_the_command_then_they_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, _ = cli(capsys, "init", "--db", str(tmp_path / "after.db"))
    assert status == 0 and (tmp_path / "after.db").exists()
    assert cli(capsys, "--db", "a.db", "init", "--dsn", "postgresql://x")[0] == 2


# -- standard output closed early (| head) ---------------------------------------------------


@pytest.mark.parametrize("command", ["list", "create"])
def test_if_standard_output_is_closed_early_then_no_traceback_and_exit_141(
    db: Path, command: str
) -> None:
    store = SQLiteKeyStore(db)
    manager = KeyManager(store)
    for _ in range(50):
        manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"], name="x" * 60)
    store.close()
    script = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "skaala_auth"]
    args = {
        "list": ["keys", "list", "--team", "team_1"],
        "create": [
            "keys",
            "create",
            "--team",
            "team_1",
            "--user",
            "user_1",
            "--scope",
            "read:calls",
        ],
    }[command]
    process = subprocess.Popen(
        [*script, "--db", str(db), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # like `| head` that has had enough, before anything was written
    with process.stderr:
        err = process.stderr.read()
    assert process.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception" not in err
    if command == "create":  # the one showing of the key was lost: say which key to revoke
        assert "was created but its key was not shown" in err and "keys revoke key_" in err
    else:
        assert err == ""


class _ClosedPipe(io.StringIO):
    """A standard output whose reader has gone."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")


def test_if_standard_output_breaks_in_process_then_141_and_the_key_id_to_revoke(
    capsys: pytest.CaptureFixture[str], db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    status = main(
        ["--db", str(db), "keys", "create", "--team", "team_1", "--user", "user_1",
         "--scope", "read:calls"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 141 and "BrokenPipeError" not in err
    store = SQLiteKeyStore(db)
    created = KeyManager(store).list_keys(team_id="team_1")
    store.close()
    assert f"keys revoke {created[0].id}" in err


# -- keys import ------------------------------------------------------------------------------

A_KEY = "sk_live_" + "Q" * 38


def _lines(*documents: dict[str, Any] | str) -> str:
    return "".join(
        (document if isinstance(document, str) else json.dumps(document)) + "\n"
        for document in documents
    )


def _keys(db: Path) -> list[Any]:
    store = SQLiteKeyStore(db)
    try:
        return KeyManager(store).list_keys(team_id="team_1")
    finally:
        store.close()


ITEM = {"team_id": "team_1", "user_id": "user_1", "scopes": ["read:calls"]}


@shows_key
def test_if_keys_are_imported_then_each_printed_once_with_its_line(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path
) -> None:
    source = tmp_path / "devices.jsonl"
    source.write_text(
        _lines(
            {**ITEM, "name": "device 1"},
            "",
            {**ITEM, "name": "device 2", "expires_in": "30d", "environment": "test"},
            {**ITEM, "scopes": ["read:calls", "write:calls"], "expires_at": "2031-01-01T00:00Z"},
        )
    )
    status, out, err = cli(capsys, "--db", str(db), "keys", "import", str(source))
    assert status == 0
    assert err == f"skaala-auth: created 3 keys from {source} (shown once)\n"
    documents = [json.loads(line) for line in out.splitlines()]
    assert [d["line"] for d in documents] == [1, 3, 4]
    assert [d["name"] for d in documents] == ["device 1", "device 2", ""]
    assert documents[1]["key"].startswith("sk_test_")
    assert documents[2]["expires_at"] == "2031-01-01T00:00:00Z"
    assert documents[2]["scopes"] == ["read:calls", "write:calls"]
    for document in documents:
        assert out.count(document["key"]) == 1
        store = SQLiteKeyStore(db)
        found = KeyManager(store).find_key(document["key"])
        store.close()
        assert found.id == document["id"]
    assert len(_changes(db)) == 2  # the member, then one entry for the whole import
    assert not any(d["key"].encode() in _database_text(db) for d in documents)


def test_if_keys_are_imported_with_output_then_a_new_0600_file_and_nothing_on_stdout(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path
) -> None:
    output = tmp_path / "keys.json"
    status, out, err = cli(
        capsys, "--db", str(db), "keys", "import", "--output", str(output), "--json",
        stdin=_lines(ITEM, ITEM),
    )  # fmt: skip
    assert (status, out) == (0, "")
    assert "created 2 keys from standard input (written to" in err
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    documents = json.loads(output.read_text())
    assert [d["line"] for d in documents] == [1, 2] and len(_keys(db)) == 2

    status, _, err = cli(
        capsys, "--db", str(db), "keys", "import", "--output", str(output), stdin=_lines(ITEM)
    )
    assert status == 1 and "exists: not overwritten" in err
    assert len(_keys(db)) == 2


def test_if_any_line_is_bad_then_each_named_none_created_and_no_output_file(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path
) -> None:
    output = tmp_path / "keys.jsonl"
    before = _changes(db)
    status, out, err = cli(
        capsys, "--db", str(db), "keys", "import", "--output", str(output),
        stdin=_lines(
            ITEM,
            {**ITEM, "user_id": "stranger"},
            {**ITEM, "scopes": ["read:invoices"]},
            {**ITEM, "name": A_KEY},
            {**ITEM, "scope": ["read:calls"]},
            {**ITEM, "expires_at": "2031-01-01T00:00"},
        ),
    )  # fmt: skip
    assert (status, out) == (1, "")
    assert "5 line(s) refused, no key created" in err
    assert "line 2: 'stranger' is not a member of 'team_1'" in err
    assert "line 3: unknown scope(s): read:invoices" in err
    assert "line 4: name holds an API key" in err and A_KEY not in err
    assert "line 5: unknown field(s) 'scope'" in err
    assert "line 6: datetimes must be timezone-aware" in err
    assert _keys(db) == [] and _changes(db) == before and not output.exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("{nope", "line 2: not JSON", id="not-json"),
        pytest.param("[1, 2]", "line 2: not a JSON object but a list", id="not-an-object"),
        pytest.param(
            json.dumps({**ITEM, "expires_in": A_KEY}), "line 2: expires_in: use", id="duration"
        ),
        pytest.param(
            json.dumps({**ITEM, "expires_at": "soon"}),
            "line 2: expires_at: use an ISO 8601",
            id="time",
        ),
    ],
)
def test_if_a_line_cannot_be_read_then_named_without_echo_and_nothing_created(
    capsys: pytest.CaptureFixture[str], db: Path, line: str, message: str
) -> None:
    status, out, err = cli(
        capsys, "--db", str(db), "keys", "import", stdin=_lines(ITEM, line, ITEM)
    )
    assert (status, out) == (1, "")
    assert "1 line(s) refused, no key created" in err and message in err
    assert A_KEY not in err and _keys(db) == []


def test_if_many_lines_are_bad_then_twenty_named_and_the_rest_counted(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    status, _, err = cli(
        capsys, "--db", str(db), "keys", "import",
        stdin=_lines(*[{**ITEM, "user_id": "stranger"}] * 30),
    )  # fmt: skip
    assert status == 1 and "30 line(s) refused" in err
    assert "line 20:" in err and "line 21:" not in err and "… and 10 more" in err


def test_if_the_import_file_cannot_be_read_then_one_line(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path
) -> None:
    status, _, err = cli(capsys, "--db", str(db), "keys", "import", str(tmp_path / "none.jsonl"))
    assert status == 1 and err.startswith("skaala-auth: error: cannot read")


def test_if_standard_output_breaks_during_an_import_then_141_and_how_to_find_the_keys(
    capsys: pytest.CaptureFixture[str], db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.stdin = io.StringIO(_lines(ITEM, ITEM, ITEM))
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    try:
        status = main(["--db", str(db), "keys", "import"])
    finally:
        sys.stdin = sys.__stdin__
    err = capsys.readouterr().err
    assert status == 141 and "BrokenPipeError" not in err
    created = _keys(db)
    assert "3 keys were created but not all were shown" in err
    assert f"created at {created[0].created_at:%Y-%m-%dT%H:%M:%S}Z (all of them at once)" in err
    assert "in team_1;" in err
