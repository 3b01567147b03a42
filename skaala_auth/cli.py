"""The ``skaala-auth`` command line: manage keys and team members on any store, run the demo.

::

    skaala-auth init
    skaala-auth members add --team team_1 --user user_1 --role owner
    skaala-auth keys create --team team_1 --user user_1 --scope read:bookings --name CI
    skaala-auth keys import devices.jsonl --output keys.jsonl   # many at once, all or none
    skaala-auth keys verify < key.txt
    skaala-auth keys revoke --key-stdin < leaked.txt     # the key found in a log
    skaala-auth --db /srv/keys.db keys list --team team_1 --json

The store is chosen by ``--db PATH`` (SQLite; default ``$SKAALA_AUTH_DB`` or
``./skaala_auth.db``) or ``--dsn`` (PostgreSQL, with ``--schema``), before or after the
command. A key is never taken as an argument (it would land in the shell history):
``keys verify``, and ``keys show`` / ``keys revoke`` with ``--key-stdin``, read it from standard
input. Anything that looks like a key given where an id, a team, a user or a name belongs is
refused, and never printed back or stored. Errors are one line on standard error and a non-zero
exit status (1; 2 for usage errors; 141 when standard output is closed early, as by ``| head``,
like a command killed by SIGPIPE).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import re
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

from . import config
from .__about__ import __version__
from .authenticator import Authenticator
from .errors import (
    AuthError,
    InvalidBatchError,
    KeyManagementError,
    NotAMemberError,
    UnknownScopeError,
)
from .keys import looks_like_key
from .manager import KeyManager
from .models import ApiKey, Member, Principal, Role
from .scopes import DEFAULT_SCOPES
from .stores.base import KeyStore

__all__ = ["CommandError", "main", "parse_duration"]

PROG: Final = "skaala-auth"
DEFAULT_DB: Final = "skaala_auth.db"
_ANY_KEY: Final = re.compile(r"sk_(?:live|test)_\w*")
#: The exit status of a command whose standard output was closed early: what a shell reports for
#: a command killed by SIGPIPE (128 + 13).
BROKEN_PIPE: Final = 128 + getattr(signal, "SIGPIPE", 13)


class _Parser(argparse.ArgumentParser):
    """Usage errors echo what was typed: blank out anything that looks like a key (someone
    pasted one as an argument; it is refused, and not printed back)."""

    def error(self, message: str) -> NoReturn:
        super().error(_ANY_KEY.sub("sk_[redacted]", message))


class CommandError(Exception):
    """A failure to report as one line on standard error (exit status 1).

    .. versionadded:: 0.1.0
    """


def parse_duration(text: str) -> timedelta:
    """``90d``, ``24h``, ``1h30m``, ``2w``, ``45s`` (or ``0``) as a :class:`~datetime.timedelta`.

    Raises:
        argparse.ArgumentTypeError: anything else.

    .. versionadded:: 0.1.0
    """
    try:
        return config.parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# -- output -----------------------------------------------------------------------------------


def _time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "team_id": key.team_id,
        "user_id": key.user_id,
        "name": key.name,
        "scopes": sorted(key.scopes),
        "prefix": key.prefix,
        "status": key.status(datetime.now(UTC)),
        "created_at": _time(key.created_at),
        "expires_at": _time(key.expires_at),
        "revoked_at": _time(key.revoked_at),
        "last_used_at": _time(key.last_used_at),
        "rotated_from": key.rotated_from,
        "disabled_at": _time(key.disabled_at),
        "rate_limit": None if key.rate_limit is None else str(key.rate_limit),
        "remaining": key.remaining,
        "allowed_ips": list(key.allowed_ips),
        "metadata": dict(key.metadata),
    }


def _member_json(member: Member) -> dict[str, Any]:
    return {
        "team_id": member.team_id,
        "user_id": member.user_id,
        "role": member.role.value,
        "added_at": _time(member.added_at),
    }


def _principal_json(principal: Principal) -> dict[str, Any]:
    return {
        "key_id": principal.key_id,
        "team_id": principal.team_id,
        "user_id": principal.user_id,
        "scopes": sorted(principal.scopes),
        "role": principal.role.value if principal.role else None,
        "prefix": principal.key_prefix,
    }


def _print_fields(out: TextIO, fields: dict[str, Any]) -> None:
    width = max(len(name) for name in fields)
    for name, value in fields.items():
        if isinstance(value, list):
            value = " ".join(value)
        out.write(f"{name.replace('_', ' ') + ':':<{width + 2}}{'-' if value is None else value}\n")


def _print_table(out: TextIO, header: Sequence[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in [list(header), *rows]:
        out.write("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def _emit(args: argparse.Namespace, document: object, human: Callable[[TextIO], object]) -> None:
    if args.json:
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        human(sys.stdout)


# -- stores -----------------------------------------------------------------------------------


def _db_path(args: argparse.Namespace) -> Path:
    return Path(args.db or os.environ.get("SKAALA_AUTH_DB") or DEFAULT_DB)


def _pepper() -> str | None:
    return os.environ.get("SKAALA_AUTH_PEPPER") or None


def open_store(args: argparse.Namespace, *, create: bool = False) -> KeyStore:
    """The store the global options name (a missing SQLite file is an error unless ``create``).
    :func:`main` closes it when the command is done."""
    if args.given is not None:
        return args.given  # type: ignore[no-any-return]
    store = _open_store(args, create=create)
    args.opened.append(store)
    return store


def _open_store(args: argparse.Namespace, *, create: bool) -> KeyStore:
    if args.dsn:
        # The pool logs each failed connection attempt; the command's one error line says why
        # it failed (an unconfigured logger would print every attempt on standard error).
        pool_log = logging.getLogger("psycopg.pool")
        if not pool_log.handlers:
            pool_log.addHandler(logging.NullHandler())
        try:
            return config.open_store(dsn=args.dsn, schema=args.schema)
        except config.ConfigurationError as error:
            raise CommandError(str(error)) from None
    if args.schema is not None:
        raise CommandError("--schema names a PostgreSQL schema: use it with --dsn")
    path = _db_path(args)
    if not create and not path.exists():
        raise CommandError(f"no key database at {path}: run '{PROG} --db {path} init' first")
    try:
        return config.open_store(db=path, create=True)
    except (sqlite3.Error, OSError) as error:
        raise CommandError(f"cannot open {path}: {error}") from None


# -- commands ---------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    store = open_store(args, create=True)
    migrate = getattr(store, "migrate", None)  # PostgreSQL, Django: the tables are made here
    if migrate is not None:
        migrate()
    if args.given is not None:
        where = args.where
    else:
        where = str(store) if args.dsn else str(_db_path(args).resolve())
    _emit(args, {"database": where}, lambda out: out.write(f"Key database ready: {where}\n"))
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    manager = KeyManager(open_store(args), pepper=_pepper())
    key, record = manager.create_key(
        team_id=args.team,
        user_id=args.user,
        scopes=args.scopes,
        name=args.name,
        expires_in=args.expires_in,
        environment="test" if args.test else "live",
        rate_limit=args.rate_limit,
        remaining=args.remaining,
        allowed_ips=args.allowed_ips or (),
        metadata=args.metadata,
    )
    args.made = record.id

    def human(out: TextIO) -> None:
        out.write(f"API key (shown once, store it now):\n\n    {key}\n\n")
        _print_fields(out, _key_json(record))

    _emit(args, {"key": key, **_key_json(record)}, human)
    return 0


#: The fields of a ``keys import`` line, and what each holds.
IMPORT_FIELDS: Final = {
    "team_id": "the team the key acts for",
    "user_id": "the team member who owns it",
    "scopes": "a list of scope names",
    "name": "a label (optional)",
    "expires_in": "a duration such as 90d (optional; default 365d)",
    "expires_at": "an ISO 8601 time with its zone, such as 2027-06-30T00:00:00Z (optional)",
    "environment": "live (default) or test",
}
#: How many refused lines ``keys import`` names before it only counts them.
_SHOWN_ERRORS: Final = 20


def _import_spec(text: str) -> dict[str, Any]:
    """One line of a ``keys import`` file as the mapping :meth:`KeyManager.create_keys` takes.

    Raises:
        ValueError: not a JSON object, or a duration or time that cannot be read.
    """
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"not a JSON object but a {type(spec).__name__}")
    if isinstance(spec.get("expires_in"), str):
        try:
            spec["expires_in"] = config.parse_duration(spec["expires_in"])
        except ValueError:
            raise ValueError("expires_in: use a number and a unit, e.g. 90d, 24h, 1h30m") from None
    if isinstance(spec.get("expires_at"), str):
        try:
            spec["expires_at"] = datetime.fromisoformat(spec["expires_at"])
        except ValueError:
            raise ValueError(
                "expires_at: use an ISO 8601 time, e.g. 2027-06-30T00:00:00Z"
            ) from None
    return spec


def _read_import(source: TextIO) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    """The specs of a JSON-lines file, the line number of each, and the errors of the lines
    that cannot be read. Blank lines are skipped."""
    specs: list[dict[str, Any]] = []
    lines: list[int] = []
    errors: list[str] = []
    for number, text in enumerate(source, start=1):
        if not text.strip():
            continue
        try:
            specs.append(_import_spec(text))
            lines.append(number)
        except ValueError as error:
            errors.append(f"line {number}: {error}")
    return specs, lines, errors


def _refused_lines(errors: list[str], refused: int) -> CommandError:
    shown = "\n".join(f"  {_ANY_KEY.sub('sk_[redacted]', error)}" for error in errors)
    more = f"\n  … and {refused - len(errors)} more" if refused > len(errors) else ""
    return CommandError(f"{refused} line(s) refused, no key created:\n{shown}{more}")


def _open_output(path: str) -> TextIO:
    """A new file for plaintext keys: created 0600, never over an existing one."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{path} exists: not overwritten (it may hold keys)") from None
    except OSError as error:
        raise CommandError(f"cannot create {path}: {error.strerror}") from None
    return open(descriptor, "w", encoding="utf-8")


def cmd_keys_import(args: argparse.Namespace) -> int:
    if args.file == "-":
        specs, lines, errors = _read_import(sys.stdin)
        where = "standard input"
    else:
        try:
            with open(args.file, encoding="utf-8") as source:
                specs, lines, errors = _read_import(source)
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"cannot read {args.file}: {error}") from None
        where = args.file
    if errors:
        raise _refused_lines(errors[:_SHOWN_ERRORS], len(errors))
    manager = KeyManager(open_store(args), pepper=_pepper())
    # The output file exists before any key does: a path that cannot be written costs nothing.
    output = _open_output(args.output) if args.output else None
    created: list[tuple[str, ApiKey]] = []
    try:
        try:
            created = manager.create_keys(specs)
        except InvalidBatchError as error:
            refused = [f"line {lines[index]}: {item}" for index, item in error.errors]
            raise _refused_lines(refused[:_SHOWN_ERRORS], error.refused) from None
        if created:
            args.imported = created
        _write_imported(output or sys.stdout, args.json, lines, created)
    finally:
        if output is not None:
            output.close()
            if not created:  # nothing was made: leave no file behind
                os.unlink(args.output)
    target = f"written to {args.output}" if args.output else "shown once"
    sys.stderr.write(f"{PROG}: created {len(created)} keys from {where} ({target})\n")
    return 0


def _write_imported(
    out: TextIO, as_array: bool, lines: list[int], created: list[tuple[str, ApiKey]]
) -> None:
    """The one showing of imported keys: a JSON object per line (or one array with --json),
    each with the input line it came from."""
    documents = (
        {"line": line, "key": key, **_key_json(record)}
        for line, (key, record) in zip(lines, created, strict=True)
    )
    if as_array:
        json.dump(list(documents), out, indent=2, ensure_ascii=False)
        out.write("\n")
        return
    for document in documents:
        out.write(json.dumps(document, ensure_ascii=False) + "\n")


def cmd_keys_list(args: argparse.Namespace) -> int:
    keys = KeyManager(open_store(args)).list_keys(team_id=args.team)
    documents = [_key_json(key) for key in keys]

    def human(out: TextIO) -> None:
        if not keys:
            out.write(f"No keys in team {args.team}.\n")
            return
        header = ["ID", "NAME", "USER", "PREFIX", "STATUS", "SCOPES", "EXPIRES", "LAST USED"]
        rows = [
            [d["id"], d["name"] or "-", d["user_id"], d["prefix"], d["status"],
             ",".join(d["scopes"]), d["expires_at"], d["last_used_at"] or "never"]
            for d in documents
        ]  # fmt: skip
        _print_table(out, header, rows)

    _emit(args, documents, human)
    return 0


def _target(args: argparse.Namespace, manager: KeyManager) -> str:
    """The id of the key a command acts on: its ``ID`` argument, or the id of the key read from
    standard input with ``--key-stdin`` (found by digest, with the service's pepper)."""
    if (args.id is None) == (not args.key_stdin):
        args.parser.error("give a key id (key_…) or --key-stdin, and not both")
    if args.id is not None:
        return str(args.id)
    return manager.find_key(_read_key()).id


def cmd_keys_show(args: argparse.Namespace) -> int:
    manager = KeyManager(open_store(args), pepper=_pepper())
    record = manager.get_key(_target(args, manager))
    _emit(args, _key_json(record), lambda out: _print_fields(out, _key_json(record)))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    manager = KeyManager(open_store(args), pepper=_pepper())
    record = manager.revoke_key(_target(args, manager))
    document = _key_json(record)

    def human(out: TextIO) -> None:
        out.write(f"Revoked {record.id} ({record.prefix}) at {document['revoked_at']}.\n")

    _emit(args, document, human)
    return 0


def cmd_keys_disable(args: argparse.Namespace) -> int:
    manager = KeyManager(open_store(args), pepper=_pepper())
    record = manager.disable_key(args.id)
    document = _key_json(record)
    _emit(args, document, lambda out: out.write(f"Disabled {record.id} ({record.prefix}).\n"))
    return 0


def cmd_keys_enable(args: argparse.Namespace) -> int:
    manager = KeyManager(open_store(args), pepper=_pepper())
    record = manager.enable_key(args.id)
    document = _key_json(record)
    _emit(args, document, lambda out: out.write(f"Enabled {record.id} ({record.prefix}).\n"))
    return 0


def cmd_keys_refill(args: argparse.Namespace) -> int:
    manager = KeyManager(open_store(args), pepper=_pepper())
    record = manager.refill_key(args.id, None if args.unlimited else args.remaining)
    document = _key_json(record)
    left = "no usage limit" if record.remaining is None else f"{record.remaining} uses left"
    _emit(args, document, lambda out: out.write(f"{record.id}: {left}.\n"))
    return 0


def cmd_keys_update(args: argparse.Namespace) -> int:
    manager = KeyManager(open_store(args), pepper=_pepper())
    changes: dict[str, Any] = {}
    if args.no_rate_limit:
        changes["rate_limit"] = None
    elif args.rate_limit is not None:
        changes["rate_limit"] = args.rate_limit
    if args.any_ip:
        changes["allowed_ips"] = ()
    elif args.allowed_ips:
        changes["allowed_ips"] = args.allowed_ips
    if args.no_metadata:
        changes["metadata"] = None
    elif args.metadata is not None:
        changes["metadata"] = args.metadata
    if not changes:
        raise CommandError("nothing to change: give --rate-limit, --allow-ip or --metadata")
    record = manager.update_key(args.id, **changes)
    _emit(args, _key_json(record), lambda out: _print_fields(out, _key_json(record)))
    return 0


def _metadata(text: str) -> dict[str, Any]:
    """``--metadata``: a JSON object."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('a JSON object, such as \'{"plan": "pro"}\'')
    return value


def _policy_arguments(parser: Any) -> None:
    parser.add_argument(
        "--rate-limit", metavar="LIMIT", help="the key's own rate limit, such as 100/minute"
    )
    parser.add_argument(
        "--allow-ip",
        dest="allowed_ips",
        action="append",
        metavar="CIDR",
        help="a network the key may be used from (repeat for more), such as 203.0.113.0/24",
    )
    parser.add_argument(
        "--metadata", type=_metadata, metavar="JSON", help="a small JSON object kept with the key"
    )


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    manager = KeyManager(open_store(args), pepper=_pepper())
    key, record = manager.rotate_key(args.id, grace=args.grace)
    args.made = record.id
    old = _key_json(manager.get_key(args.id))

    def human(out: TextIO) -> None:
        out.write(f"New API key (shown once, store it now):\n\n    {key}\n\n")
        _print_fields(out, _key_json(record))
        out.write(f"\nThe old key {args.id} works until {old['expires_at']}.\n")

    _emit(args, {"key": key, **_key_json(record), "old": old}, human)
    return 0


def _read_key() -> str:
    """A key from standard input (prompted for, unechoed, on a terminal)."""
    if sys.stdin is None:
        raise CommandError("no key given: pipe it to standard input")
    if sys.stdin.isatty():
        key = getpass.getpass("API key: ")
    else:
        key = sys.stdin.readline()
    key = key.strip()
    if not key:
        raise CommandError("no key given: pipe it to standard input")
    return key


def cmd_keys_verify(args: argparse.Namespace) -> int:
    key = _read_key()
    authenticator = Authenticator(
        open_store(args),
        pepper=_pepper(),
        accept_test_keys=args.accept_test_keys,
        track_last_used=False,  # inspecting a key is not using it
    )
    try:
        principal = authenticator.verify(key, required_scopes=args.scopes, team_id=args.team)
    except AuthError as error:
        reason = error.reason.value
        if args.json:
            document = {"valid": False, "status": error.status_code, **error.body, "reason": reason}
            json.dump(document, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            sys.stderr.write(f"{PROG}: refused ({error.status_code}): {error.message} ({reason})\n")
        return 1
    finally:
        authenticator.close()
    document = {"valid": True, **_principal_json(principal)}
    _emit(args, document, lambda out: _print_fields(out, document))
    return 0


def cmd_members_add(args: argparse.Namespace) -> int:
    # The first write on a new machine: it creates the database, as `init` would.
    member = KeyManager(open_store(args, create=True)).add_member(
        team_id=args.team, user_id=args.user, role=args.role
    )
    document = _member_json(member)

    def human(out: TextIO) -> None:
        out.write(f"{member.user_id} is now {member.role.value} of {member.team_id}.\n")

    _emit(args, document, human)
    return 0


def cmd_members_remove(args: argparse.Namespace) -> int:
    KeyManager(open_store(args)).remove_member(team_id=args.team, user_id=args.user)
    document = {"team_id": args.team, "user_id": args.user, "removed": True}

    def human(out: TextIO) -> None:
        out.write(f"Removed {args.user} from {args.team}; their keys for it stop working.\n")

    _emit(args, document, human)
    return 0


def cmd_members_list(args: argparse.Namespace) -> int:
    members = KeyManager(open_store(args)).list_members(team_id=args.team)
    documents = [_member_json(member) for member in members]

    def human(out: TextIO) -> None:
        if not members:
            out.write(f"No members in team {args.team}.\n")
            return
        rows = [[d["user_id"], d["role"], d["added_at"]] for d in documents]
        _print_table(out, ["USER", "ROLE", "ADDED"], rows)

    _emit(args, documents, human)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.given is not None:
        raise CommandError("the demo runs on its own store: use --db PATH or --dsn")
    if args.schema is not None and not args.dsn:
        raise CommandError("--schema names a PostgreSQL schema: use it with --dsn")
    try:
        from .demo import run
    except ImportError as error:
        raise CommandError(str(error)) from None
    try:
        run(
            _db_path(args),
            host=args.host,
            port=args.port,
            pepper=_pepper(),
            dsn=args.dsn,
            schema=args.schema,
        )
    except config.ConfigurationError as error:
        raise CommandError(str(error)) from None
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down gracefully, then re-raised it
        pass
    return 0


# -- the parser -------------------------------------------------------------------------------


def _parser() -> _Parser:
    json_flag = _Parser(add_help=False)
    json_flag.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON, for scripts"
    )
    # The store options are accepted after the command too (`skaala-auth init --db PATH`).
    json_flag.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help="as above")
    json_flag.add_argument("--dsn", metavar="DSN", default=argparse.SUPPRESS, help="as above")
    json_flag.add_argument("--schema", metavar="NAME", default=argparse.SUPPRESS, help="as above")

    parser = _Parser(
        prog=PROG,
        description="Manage skaala_auth API keys and team members, or run the demo API.",
        epilog=(
            "Keys are never accepted as arguments: 'keys verify', and 'keys show' or "
            "'keys revoke' with --key-stdin, read one from standard input."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--db",
        metavar="PATH",
        help=f"SQLite key database (default: $SKAALA_AUTH_DB or ./{DEFAULT_DB})",
    )
    where.add_argument("--dsn", metavar="DSN", help="PostgreSQL connection string")
    parser.add_argument(
        "--schema",
        metavar="NAME",
        help="with --dsn: the PostgreSQL schema of the key tables (default: skaala_auth)",
    )
    parser.add_argument("--json", action="store_true", default=False, help="print JSON")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        group: argparse._SubParsersAction[_Parser],
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help: str,
    ) -> _Parser:
        sub = group.add_parser(name, help=help, description=help, parents=[json_flag])
        sub.set_defaults(handler=handler)
        return sub

    command(commands, "init", cmd_init, "create the key database (safe to run again)")

    keys = commands.add_parser("keys", help="create, list, show, revoke, rotate, verify keys")
    keys_commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    scope_help = f"a scope the key grants; repeat for more ({', '.join(DEFAULT_SCOPES)})"

    create = command(keys_commands, "create", cmd_keys_create, "create a key (printed once)")
    create.add_argument("--team", required=True, help="the team the key acts for")
    create.add_argument("--user", required=True, help="the team member who owns the key")
    create.add_argument(
        "--scope", dest="scopes", action="append", required=True, metavar="SCOPE", help=scope_help
    )
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument(
        "--expires-in", type=parse_duration, metavar="DURATION", help="lifetime (default 365d)"
    )
    create.add_argument("--test", action="store_true", help="make an sk_test_ key")
    _policy_arguments(create)
    create.add_argument(
        "--remaining", type=int, metavar="N", help="a usage limit: the key works N times"
    )

    importing = command(
        keys_commands,
        "import",
        cmd_keys_import,
        "create many keys from JSON lines, all or none (printed once)",
    )
    importing.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE",
        help="one JSON object per line (default: standard input); fields: "
        + "; ".join(f"{name}: {what}" for name, what in IMPORT_FIELDS.items()),
    )
    importing.add_argument(
        "--output",
        metavar="PATH",
        help="write the keys to this new file (created 0600) instead of standard output",
    )

    listing = command(keys_commands, "list", cmd_keys_list, "list a team's keys")
    listing.add_argument("--team", required=True)
    show = command(keys_commands, "show", cmd_keys_show, "show one key's record")
    revoke = command(keys_commands, "revoke", cmd_keys_revoke, "revoke a key now")
    for sub in (show, revoke):
        sub.add_argument("id", nargs="?", help="the key id (key_…)")
        sub.add_argument(
            "--key-stdin",
            action="store_true",
            help="find the key by its value, read from standard input (never an argument)",
        )
        sub.set_defaults(parser=sub)
    disable = command(keys_commands, "disable", cmd_keys_disable, "turn a key off (reversible)")
    enable = command(keys_commands, "enable", cmd_keys_enable, "turn a disabled key back on")
    refill = command(keys_commands, "refill", cmd_keys_refill, "set the uses a key has left")
    update = command(
        keys_commands, "update", cmd_keys_update, "change a key's rate limit, IPs or metadata"
    )
    for sub in (disable, enable, refill, update):
        sub.add_argument("id", help="the key id (key_…)")
    uses = refill.add_mutually_exclusive_group(required=True)
    uses.add_argument("--remaining", type=int, metavar="N", help="uses left from now")
    uses.add_argument("--unlimited", action="store_true", help="remove the usage limit")
    _policy_arguments(update)
    update.add_argument("--no-rate-limit", action="store_true", help="back to the default")
    update.add_argument("--any-ip", action="store_true", help="remove the IP allow-list")
    update.add_argument("--no-metadata", action="store_true", help="remove the metadata")
    rotate = command(keys_commands, "rotate", cmd_keys_rotate, "replace a key (new key printed)")
    rotate.add_argument("id", help="the key id (key_…)")
    rotate.add_argument(
        "--grace",
        type=parse_duration,
        default=timedelta(hours=24),
        metavar="DURATION",
        help="how long the old key keeps working (default 24h; 0 ends it now)",
    )
    verify = command(
        keys_commands, "verify", cmd_keys_verify, "check a key read from standard input"
    )
    verify.add_argument(
        "--scope", dest="scopes", action="append", default=[], metavar="SCOPE", help="require it"
    )
    verify.add_argument("--team", help="require a key of this team")
    verify.add_argument("--accept-test-keys", action="store_true", help="accept sk_test_ keys")

    members = commands.add_parser("members", help="add, remove, list team members")
    members_commands = members.add_subparsers(dest="members_command", metavar="COMMAND")
    members_commands.required = True
    add = command(members_commands, "add", cmd_members_add, "add a member (or change a role)")
    add.add_argument("--team", required=True)
    add.add_argument("--user", required=True)
    add.add_argument("--role", choices=[role.value for role in Role], default="member")
    remove = command(members_commands, "remove", cmd_members_remove, "remove a member")
    remove.add_argument("--team", required=True)
    remove.add_argument("--user", required=True)
    member_list = command(members_commands, "list", cmd_members_list, "list a team's members")
    member_list.add_argument("--team", required=True)

    demo = command(commands, "demo", cmd_demo, "run the demo bookings API")
    demo.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    return parser


def main(
    argv: Sequence[str] | None = None, *, store: KeyStore | None = None, where: str = ""
) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        store: the store to work on when neither ``--db`` nor ``--dsn`` is given, instead of
            the default file (``manage.py skaala_auth`` passes Django's ORM store); the caller
            keeps it open.
        where: how ``init`` names that store.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.4.0
       ``store`` and ``where``.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    _refuse_keys(parser, args)
    if args.db is not None and args.dsn is not None:
        parser.error("argument --dsn: not allowed with argument --db")
    args.opened = []
    args.given = store if args.db is None and args.dsn is None else None
    args.where = where or repr(store)
    try:
        status: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        return _broken_pipe(args)
    except NotAMemberError as error:
        if args.handler is not cmd_keys_create:
            return _fail(str(error))
        team, user = getattr(args, "team", None) or "TEAM", getattr(args, "user", None) or "USER"
        hint = f"add them first: {PROG} members add --team {team} --user {user} --role member"
        return _fail(f"{error}; {hint}")
    except UnknownScopeError as error:
        return _fail(f"{error} (known: {', '.join(DEFAULT_SCOPES)})")
    except (CommandError, KeyManagementError, ValueError, TypeError) as error:
        return _fail(str(error))
    except (sqlite3.Error, OSError) as error:
        return _fail(f"{type(error).__name__}: {error}")
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # never a traceback: one line, and the type for a bug report
        return _fail(f"unexpected {type(error).__name__}: {error}")
    finally:
        for store in args.opened:
            store.close()
    return status


_ARGUMENT_NAMES: Final = {"id": "the ID argument", "scopes": "--scope"}


def _refuse_keys(parser: _Parser, args: argparse.Namespace) -> None:
    """A key pasted where an id, a team, a user or a name belongs: refuse it before anything
    is looked up or stored, and say so without printing it back."""
    for name, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and looks_like_key(item) for item in values):
            where = _ARGUMENT_NAMES.get(name, "--" + name.replace("_", "-"))
            hint = ""
            if getattr(args, "keys_command", None) in (
                "show",
                "revoke",
                "rotate",
                "disable",
                "enable",
                "refill",
                "update",
            ):
                hint = (
                    f"; to find a key by its value, pipe it: {PROG} keys show --key-stdin "
                    f"< key.txt (or keys revoke --key-stdin)"
                )
            parser.error(
                f"{where} is an API key, not an id: refused, not stored and not printed{hint}"
            )


def _broken_pipe(args: argparse.Namespace) -> int:
    """Standard output was closed early (``| head``): no traceback, no error line, and nothing
    more written to it (the interpreter's last flush would fail again)."""
    try:
        fileno: int | None = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (a capture): nothing will be flushed to it
        fileno = None
    if fileno is not None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fileno)
        finally:
            os.close(devnull)
    imported = getattr(args, "imported", None)
    if imported:  # keys were made but their one showing was cut off
        teams = sorted({record.team_id for _, record in imported})
        more = f" (and {len(teams) - 3} more teams)" if len(teams) > 3 else ""
        sys.stderr.write(
            f"{PROG}: {len(imported)} keys were created but not all were shown (standard output "
            f"was closed). They are the keys created at {_time(imported[0][1].created_at)} "
            f"(all of them at once) in {', '.join(teams[:3])}{more}; '{PROG} --json keys list "
            "--team TEAM' finds them: revoke them and import again\n"
        )
    made = getattr(args, "made", None)
    if made is not None:  # a key was made but its one showing was cut off
        sys.stderr.write(
            f"{PROG}: {made} was created but its key was not shown in full (standard output "
            f"was closed): revoke it with '{PROG} keys revoke {made}' and make another\n"
        )
    return BROKEN_PIPE


def _fail(message: str) -> int:
    # Error texts can quote what was given: never a key, whatever path it came by.
    sys.stderr.write(f"{PROG}: error: {_ANY_KEY.sub('sk_[redacted]', message)}\n")
    return 1
