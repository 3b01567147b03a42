"""Fuzz the rules table (``skaala_auth.rules.Rules``) with atheris.

Properties:

- building a table from any patterns raises nothing but ``ValueError`` or ``TypeError`` (the
  documented refusals of a bad pattern); matching any method and path raises nothing;
- ``HEAD`` is ``GET``, and the method's case does not matter;
- no spelling of a protected path is less protected: for a path that needs a key, the same path
  in another case, with a trailing slash added or removed, with a slash doubled, with a leading
  slash added or with a ``/.`` segment still needs a key, with at least the same scopes, and is
  never public;
- a path under a ``protect`` prefix, in any case, needs a key.

Run: ``python fuzz/fuzz_rules.py [corpus_dir] -max_total_time=60`` (docs/security.md).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["skaala_auth"]):
    from skaala_auth.rules import Requirement, Rule, Rules

#: A drop-in table as docs/security.md writes one (public paths never overlap protected ones).
TABLE = Rules(
    [
        Rule("/api/v1/teams/{team_id}/bookings", methods=["GET"], scopes=["read:bookings"]),
        Rule("/api/v1/teams/{team_id}/bookings", methods=["POST"], scopes=["write:bookings"]),
        Rule("/api/v1/contacts", scopes=["read:contacts"]),
        Rule("/api/v1/webhooks*", scopes=["webhooks:manage"]),
        Rule("/admin/", methods=["GET", "DELETE"], scopes=["write:calls"]),
    ],
    public=["/health", "/docs*", "/public/{name}"],
    protect=["/api/", "/internal"],
)
SEGMENTS = ["api", "v1", "teams", "team_1", "bookings", "contacts", "webhooks", "admin",
            "health", "docs", "public", "internal", "", ".", "..", "API", "x"]  # fmt: skip
METHODS = ["GET", "get", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND", ""]


def path(provider: atheris.FuzzedDataProvider) -> str:
    if provider.ConsumeBool():
        return provider.ConsumeUnicodeNoSurrogates(40)
    parts = [
        provider.PickValueInList(SEGMENTS)
        if provider.ConsumeBool()
        else provider.ConsumeUnicodeNoSurrogates(6)
        for _ in range(provider.ConsumeIntInRange(0, 6))
    ]
    return "/" + "/".join(parts) + ("/" if provider.ConsumeBool() else "")


def spellings(path: str, *, unslash: bool = True) -> list[str]:
    """Other spellings a router may route as ``path`` (``unslash``: also without its trailing
    slash)."""
    found = [path.upper(), path.lower(), path.swapcase(), "/" + path]
    if not path.endswith("/"):
        found.append(path + "/")
    elif unslash and len(path) > 1:
        found.append(path[:-1])
    if "/" in path[1:] and ".." not in path.split("/"):  # ("/.." cancels what precedes it)
        at = path.index("/", 1)
        found.append(path[:at] + "/" + path[at:])  # a doubled slash
        found.append(path[:at] + "/." + path[at:])  # a dot segment
    return found


def covers(strict: Requirement, loose: Requirement) -> bool:
    return strict.required and not strict.public and set(strict.scopes) >= set(loose.scopes)


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    if provider.ConsumeIntInRange(0, 4) == 0:  # a table of fuzzed patterns
        patterns = [provider.ConsumeUnicodeNoSurrogates(16) for _ in range(3)]
        try:
            table = Rules(
                [Rule(patterns[0], scopes=["read:calls"]), (patterns[1], ["read:staff"])],
                public=[patterns[2]],
                protect=[provider.ConsumeUnicodeNoSurrogates(8)],
                default=provider.PickValueInList(["allow", "deny"]),
            )
        except (ValueError, TypeError):
            return
    else:
        table = TABLE
    method = provider.PickValueInList(METHODS) if provider.ConsumeBool() else (
        provider.ConsumeUnicodeNoSurrogates(8)
    )  # fmt: skip
    target = path(provider)
    found = table.match(method, target)
    assert isinstance(found, Requirement)
    if method.upper() == "HEAD":
        assert found == table.match("GET", target)
    assert found == table.match(method.swapcase(), target)
    if table is not TABLE or not found.required:
        return
    # Under a protect prefix only (every rule of TABLE has scopes): "/api" is not under "/api/"
    # (tests/core/test_rules.py says so), so the prefix's root keeps its slash.
    for other in spellings(target, unslash=bool(found.scopes)):
        assert covers(table.match(method, other), found), (method, target, other)
    if target.lower().startswith(("/api/", "/internal")):
        assert found.required


def main(argv: list[str]) -> None:
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
