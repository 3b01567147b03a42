"""The other process of the two-process revocation test (``test_django_orm.py``).

Configures Django on the database given as JSON in ``argv[1]``, reads a key from stdin (never
from argv: a command line is visible to every local user), authenticates it through an
authenticator on the ORM store until it is refused, and prints ``ready`` after the first grant
and ``refused <time.time()>`` at the refusal. The key is never printed.
"""

from __future__ import annotations

import json
import sys
import time

import django
from django.conf import settings


def main() -> int:
    database = json.loads(sys.argv[1])
    settings.configure(
        USE_TZ=True,
        DATABASES={"default": database},
        INSTALLED_APPS=["django.contrib.contenttypes", "skaala_auth.django"],
    )
    django.setup()

    from skaala_auth import Authenticator, InvalidKeyError
    from skaala_auth.django.store import DjangoKeyStore

    key = sys.stdin.readline().strip()
    deadline = time.monotonic() + 30
    with Authenticator(DjangoKeyStore("default")) as auth:
        auth.verify(key)  # raises (and fails the test) if the key does not work here
        print("ready", flush=True)
        while time.monotonic() < deadline:
            try:
                auth.verify(key)  # from the cache, until a poll brings the revocation
            except InvalidKeyError:
                print(f"refused {time.time()}", flush=True)
                return 0
            time.sleep(0.005)
    print("never refused", flush=True)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
