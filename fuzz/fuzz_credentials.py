"""Fuzz credential extraction (``extract_key``, ``environ_headers``) with atheris.

Properties, for any headers (``str`` or ``bytes`` pairs, any names, any values, repeated) and
any query string:

- ``extract_key`` raises nothing but ``InvalidRequestError`` (an ``AuthError``: the 400);
- what it returns is ``None`` or a non-empty ``str`` with no HTTP whitespace at its ends, taken
  from an ``Authorization`` (after ``Bearer``) or ``X-API-Key`` value, never from another
  header or the query string;
- two credentials (a bearer ``Authorization`` and an ``X-API-Key``), or one header repeated,
  are never accepted as one (an ``Authorization`` of another scheme is not ours: absent);
- a query string that names a key (``api_key=…``) or starts a value with ``sk_live_`` is refused;
- ``environ_headers`` keeps only the credential headers (and the preflight marker) of a WSGI
  environ, and ``extract_key`` decides the same on them as on the equivalent pairs.

Run: ``python fuzz/fuzz_credentials.py [corpus_dir] -max_total_time=60`` (docs/security.md).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["skaala_auth"]):
    from skaala_auth.credentials import environ_headers, extract_key
    from skaala_auth.errors import InvalidRequestError

NAMES = ["Authorization", "authorization", "X-API-Key", "x-api-key", "X-Api-Key", "Cookie",
         "Host", "Access-Control-Request-Method", "Authorization2", "X-API-Keys"]  # fmt: skip
CREDENTIALS = ("authorization", "x-api-key")
# What environ_headers carries beside the key's headers: the preflight marker, and a dashboard
# session's carriers with what its CSRF check reads.
CARRIED = ("access-control-request-method", "cookie", "x-stack-access-token", "origin")
CARRIED += ("referer", "host")
SCHEMES = ["Bearer ", "bearer ", "BEARER\t", "Bearer  ", "Bearer", "Basic ", "Token ", ""]
WHITESPACE = " \t"


def header_value(provider: atheris.FuzzedDataProvider) -> str:
    if provider.ConsumeBool():
        return provider.ConsumeUnicodeNoSurrogates(60)
    scheme = provider.PickValueInList(SCHEMES)
    body = provider.ConsumeUnicodeNoSurrogates(50)
    return scheme + body


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    pairs: list[tuple[str, str]] = []
    for _ in range(provider.ConsumeIntInRange(0, 4)):
        name = provider.PickValueInList(NAMES) if provider.ConsumeBool() else (
            provider.ConsumeUnicodeNoSurrogates(12)
        )  # fmt: skip
        pairs.append((name, header_value(provider)))
    query = provider.ConsumeUnicodeNoSurrogates(40) if provider.ConsumeBool() else None
    if query is not None and provider.ConsumeBool():
        query += provider.PickValueInList(["&api_key=", ";sk_live_", "?access_token=", "&x="])
        query += provider.ConsumeUnicodeNoSurrogates(20)
    as_bytes = provider.ConsumeBool()

    credential_values = [value for name, value in pairs if name.lower() in CREDENTIALS]
    try:
        if as_bytes:
            raw = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in pairs]
        else:
            raw = pairs
    except UnicodeEncodeError:  # not what a server hands over as bytes
        raw = pairs
    try:
        found = extract_key(raw, query)
    except InvalidRequestError:
        found = None
        refused = True
    else:
        refused = False
    # Nothing else may escape (an exception here is a crash the fuzzer reports).
    if refused:
        return
    names = [name.lower() for name, _ in pairs if name.lower() in CREDENTIALS]
    assert len(names) == len(set(names)) or found is None, "a repeated credential accepted"
    if found is not None:
        assert isinstance(found, str) and found, found
        assert found == found.strip(WHITESPACE), repr(found)
        assert any(found in value for value in credential_values), "a key from nowhere"
        bearer = any(
            name.lower() == "authorization" and value.strip(WHITESPACE).lower().startswith("bearer")
            for name, value in pairs
        )  # another scheme (Basic …) is not ours: absent
        assert not (bearer and "x-api-key" in names), "two credentials accepted as one"
    if query:
        lowered = query.lower().replace(";", "&")
        for part in lowered.split("&"):
            name, _, value = part.partition("=")
            assert name not in ("api_key", "access_token"), "a key in the query"
            assert not value.lstrip().startswith("sk_live_"), "a key in the query"

    # The same request as a WSGI environ (a server merges a repeated header with commas).
    environ: dict[str, object] = {"REQUEST_METHOD": "GET", "QUERY_STRING": ""}
    for name, value in pairs:
        key = "HTTP_" + name.upper().replace("-", "_")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    kept = environ_headers(environ)
    assert all(name in (*CREDENTIALS, *CARRIED) for name, _ in kept), kept
    try:
        again = extract_key(kept)
    except InvalidRequestError:
        again = None
    assert again is None or again == found or len(names) != len(set(names)), (again, found)


def main(argv: list[str]) -> None:
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
