"""``manage.py skaala_auth …``: the ``skaala-auth`` command line, on the store that the
``SKAALA_AUTH`` setting names (by default the ORM store, in the project's database).

::

    python manage.py skaala_auth members add --team team_1 --user user_1 --role owner
    python manage.py skaala_auth keys create --team team_1 --user user_1 --scope read:bookings
    python manage.py skaala_auth --json keys list --team team_1
    python manage.py skaala_auth --version                  # skaala-auth's, not Django's

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from skaala_auth import cli
from skaala_auth.__about__ import __version__
from skaala_auth.django.conf import get_authenticator, get_store
from skaala_auth.django.store import DjangoKeyStore
from skaala_auth.stores import KeyStore, SQLiteKeyStore


class Command(BaseCommand):  # type: ignore[misc]
    """``manage.py skaala_auth``: every argument goes to the ``skaala-auth`` command line.

    .. versionadded:: 0.1.0
    """

    help = (
        "Manage API keys and team members (the skaala-auth command line) on the store of the "
        "SKAALA_AUTH setting. 'manage.py skaala_auth --help' lists the commands."
    )
    # The system checks would stop 'init' from creating the missing store they complain about.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("arguments", nargs=argparse.REMAINDER, help="skaala-auth arguments")

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        """Django's parser, but options it does not know (the CLI's ``--json``, ``--db`` before
        the command) are handed to the CLI instead of refused: argparse puts an option given
        before the first positional argument ahead of ``REMAINDER``, and then calls it
        unrecognised."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def parse_args(
            args: list[str] | None = None, namespace: argparse.Namespace | None = None
        ) -> argparse.Namespace:
            options: argparse.Namespace
            options, unknown = parser.parse_known_args(args, namespace)
            # Unknown options can only come before the first positional argument (REMAINDER
            # takes everything from there on): they go first, in their order.
            options.arguments = [*unknown, *options.arguments]
            return options

        parser.parse_args = parse_args
        return parser

    def get_version(self) -> str:
        """``manage.py skaala_auth --version`` prints skaala-auth's version, not Django's."""
        return f"{cli.PROG} {__version__}"

    def handle(self, *args: Any, **options: Any) -> None:
        store, where, arguments = _store()
        argv = [*arguments, *options["arguments"]]
        self.stdout.ending = ""  # the CLI writes whole lines itself
        with _pepper(), contextlib.redirect_stdout(self.stdout):
            status = cli.main(argv, store=store, where=where)
        if status:
            raise CommandError(f"skaala-auth exited with status {status}", returncode=status)

    def run_from_argv(self, argv: list[str]) -> None:
        if argv[2:3] in (["-h"], ["--help"]):  # the CLI's help, which lists its commands
            raise SystemExit(cli.main(["--help"]))
        super().run_from_argv(argv)


def _store() -> tuple[KeyStore | None, str, list[str]]:
    """The store of ``SKAALA_AUTH``: the ORM store (given to the CLI, with how to name it), or
    the CLI's ``--db``/``--dsn`` options."""
    from django.conf import settings

    options = getattr(settings, "SKAALA_AUTH", {})
    if "DSN" in options:
        return None, "", ["--dsn", str(options["DSN"])]
    if "DB" in options:
        return None, "", ["--db", os.fspath(options["DB"])]
    if "AUTHENTICATOR" in options:
        store = get_authenticator().store
        if isinstance(store, SQLiteKeyStore):
            return None, "", ["--db", store.path]
        if isinstance(store, DjangoKeyStore):
            return store, _where(store), []
        raise CommandError(
            "SKAALA_AUTH['AUTHENTICATOR'] has a store manage.py cannot reach: set "
            "SKAALA_AUTH['DB'] or ['DSN'] to manage keys from manage.py"
        )
    try:
        store = get_store()
    except ImproperlyConfigured as error:
        raise CommandError(str(error)) from None
    assert isinstance(store, DjangoKeyStore)  # noqa: S101 - no DB, DSN, AUTHENTICATOR: the ORM's
    return store, _where(store), []


def _where(store: DjangoKeyStore) -> str:
    return f"the tables of skaala_auth.django in the database {store.alias!r} (manage.py migrate)"


@contextlib.contextmanager
def _pepper() -> Iterator[None]:
    """Hand ``SKAALA_AUTH["PEPPER"]`` to the CLI, which reads it from the environment: keys made
    without the service's pepper would never authenticate."""
    from django.conf import settings

    pepper = getattr(settings, "SKAALA_AUTH", {}).get("PEPPER")
    if pepper is None or "SKAALA_AUTH_PEPPER" in os.environ:
        yield
        return
    os.environ["SKAALA_AUTH_PEPPER"] = pepper if isinstance(pepper, str) else pepper.decode()
    try:
        yield
    finally:
        del os.environ["SKAALA_AUTH_PEPPER"]
