"""Hypothesis strategies: methods, mutated paths, credentials (API keys and dashboard sessions),
origins and preflights, as an attacker would send them."""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import strategies as st

from .world import (
    BOOKINGS,
    DASHBOARD,
    HEALTH,
    INTERNAL,
    PROJECT,
    STAFF,
    Credentials,
    Request,
    Session,
    Token,
    World,
)

# Weighted: most requests use a method the routes accept, so that they reach a handler.
METHODS = st.one_of(
    st.sampled_from(["GET", "GET", "HEAD", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    st.sampled_from(["get", "head", "post", "put", "delete", "patch", "options", "Get"]),
    st.sampled_from(["PROPFIND", "TRACE", "CONNECT", "FOO", "GETS"]),
)
TEAMS = st.sampled_from(["team_1", "team_1", "team_2", "team_3"])


def _slashes(path: str) -> list[int]:
    return [i for i, char in enumerate(path) if char == "/"]


#: How many mutations a path gets: half of the paths as the route writes them.
MUTATIONS = [0, 0, 0, 1, 1, 2, 3]
#: For requests that carry a session, fewer: most of them should reach a handler, where the
#: oracle checks the session's team, role and principal.
SESSION_MUTATIONS = [0, 0, 0, 0, 0, 1, 1, 2, 3]


@st.composite
def paths(draw: st.DrawFn, mutation_counts: list[int] = MUTATIONS) -> str:
    """A real route, then 0–3 mutations of its raw (on-the-wire) form."""
    team = draw(TEAMS)
    path = draw(
        st.sampled_from(
            [BOOKINGS, BOOKINGS, BOOKINGS, STAFF, HEALTH, INTERNAL, "/api/v1/teams/{team}"]
        )
    ).format(team=team)
    mutations = draw(st.sampled_from(mutation_counts))
    for _ in range(mutations):
        kind = draw(
            st.sampled_from(
                [
                    "lead2",
                    "lead3",
                    "double",
                    "trail",
                    "dot",
                    "dotdot",
                    "upper_segment",
                    "upper_all",
                    "pct_letter",
                    "pct_slash",
                ]
            )
        )
        slashes = _slashes(path)
        at = slashes[draw(st.integers(0, len(slashes) - 1))] if slashes else 0
        if kind == "lead2":
            path = "/" + path if path.startswith("/") else "//" + path
        elif kind == "lead3":
            path = "//" + path
        elif kind == "double":
            path = path[:at] + "/" + path[at:]
        elif kind == "trail":
            path += "/"
        elif kind == "dot":
            path = path[:at] + "/." + path[at:]
        elif kind == "dotdot":
            path = path[:at] + "/x/.." + path[at:]
        elif kind == "upper_segment":
            end = path.find("/", at + 1)
            end = len(path) if end < 0 else end
            path = path[: at + 1] + path[at + 1 : end].upper() + path[end:]
        elif kind == "upper_all":
            path = path.upper()
        elif kind == "pct_letter":
            letters = [i for i, char in enumerate(path) if char.isalnum()]
            if letters:
                i = letters[draw(st.integers(0, len(letters) - 1))]
                path = path[:i] + f"%{ord(path[i]):02X}" + path[i + 1 :]
        elif kind == "pct_slash" and at > 0:
            path = path[:at] + "%2F" + path[at + 1 :]
    return path


KEY_LABELS = [
    "t1_all",
    "t1_all",
    "t1_all",
    "t1_all",
    "t1_read",
    "t1_read",
    "t1_staff",
    "t1_staff",
    "t2_all",
    "t2_all",
    "t2_staff",
    "revoked",
    "expired",
    "unknown",
    "junk_typo",
    "junk_text",
    "junk_long",
    "junk_checksum",
]


@st.composite
def key_credentials(draw: st.DrawFn, world: World) -> Credentials:
    labels = st.sampled_from(KEY_LABELS)
    label = draw(labels)
    key = world.keys[label].key
    form = draw(
        st.sampled_from(
            [
                "none",
                "none",
                "bearer",
                "bearer",
                "bearer",
                "bearer",
                "x_api_key",
                "x_api_key",
                "x_api_key",
                "x_api_key",
                "basic_and_x_api_key",
                "both",
                "repeated_bearer",
                "repeated_x_api_key",
                "tab_bearer_and_x_api_key",
                "odd_space_around",
                "bearer_extra",
            ]
        )
    )
    if form == "none":
        return Credentials("none", (), None, key_presented=False)
    if form == "bearer":
        scheme = draw(st.sampled_from(["Bearer", "bearer", "BEARER"]))
        spaces = " " * draw(st.integers(1, 3))
        return Credentials(f"bearer({label})", (("Authorization", f"{scheme}{spaces}{key}"),), key)
    if form == "x_api_key":
        name = draw(st.sampled_from(["X-API-Key", "x-api-key", "X-Api-Key"]))
        return Credentials(f"x-api-key({label})", ((name, key),), key)
    if form == "basic_and_x_api_key":  # another scheme is not ours: one credential
        headers = (("Authorization", "Basic Zm9vOmJhcg=="), ("X-API-Key", key))
        return Credentials(f"basic+x-api-key({label})", headers, key)
    other = world.keys[draw(labels)].key
    if form == "both":
        headers = (("Authorization", f"Bearer {key}"), ("X-API-Key", other))
    elif form == "repeated_bearer":
        headers = (("Authorization", f"Bearer {key}"), ("Authorization", f"Bearer {other}"))
    elif form == "repeated_x_api_key":
        headers = (("X-API-Key", key), ("X-API-Key", other))
    elif form == "tab_bearer_and_x_api_key":
        headers = (("Authorization", f"Bearer\t{key}"), ("X-API-Key", other))
    elif form == "odd_space_around":
        space = draw(st.sampled_from(["\xa0", "\x0b", "\x85", "\x0c"]))
        before, after = draw(st.sampled_from([(space, ""), ("", space), (space, space)]))
        name = draw(st.sampled_from(["Authorization", "X-API-Key"]))
        value = f"{before}{key}{after}"
        headers = ((name, f"Bearer {value}" if name == "Authorization" else value),)
        return Credentials(f"{name}+{space!r}({label})", headers, None)
    else:  # bearer_extra
        return Credentials(f"bearer-extra({label})", (("Authorization", f"Bearer {key} x"),), None)
    other_label = world.by_key(other)
    return Credentials(f"{form}({label},{other_label and other_label.label})", headers, None)


# -- dashboard sessions ---------------------------------------------------------------------------

TOKEN_LABELS = [
    "good:user_1",
    "good:user_1",
    "good:user_1",
    "good:member_1",
    "good:member_1",
    "good:member_1",
    "good:user_2",
    "good:user_2",
    "good:admin_2",
    "good:loner",
    "good:loner",
    "expired:user_1",
    "future:user_1",
    "no_exp:user_1",
    "wrong_aud:user_1",
    "anon:user_1",
    "foreign:user_1",
    "forged_kid:user_1",
    "tampered:member_1->user_1",
    "alg_none:user_1",
]
SESSION_FORMS = [
    "cookie",
    "cookie",
    "cookie",
    "cookie",
    "cookie_among_garbage",
    "cookie_quoted",
    "sdk",
    "sdk",
    "sdk_no_refresh",
    "sdk_raw",
    "sdk_mismatch",
    "sdk_garbage",
    "header",
    "header",
    "header",
    "cookie_and_header",
    "sdk_and_header",
    "cookie_and_sdk",
    "repeated_cookie",
    "repeated_header",
    "split_cookie_headers",
    "garbage_cookie",
    "garbage_cookie_and_header",
    "empty_cookie_and_header",
    "empty_cookie",
]
REFRESH_COOKIE = f"stack-refresh-{PROJECT}"
HEADER_NAMES = st.sampled_from(
    ["X-Stack-Access-Token", "x-stack-access-token", "X-STACK-ACCESS-TOKEN"]
)


def _sdk(refresh: str, token: str, *, encoded: bool = True) -> str:
    pair = json.dumps([refresh, token], separators=(",", ":"))
    return f"stack-access={quote(pair) if encoded else pair}"


def _session(token: Token, *, by_cookie: bool, refused: str | None = None) -> Session:
    return Session(token.user, by_cookie, refused or token.refused)


@st.composite
def session_credentials(
    draw: st.DrawFn, world: World
) -> tuple[str, tuple[tuple[str, str], ...], Session | None]:
    """A session as the dashboard, the Stack SDK, an integration or an attacker sends it: its
    label, its headers, and the session the contract reads from them."""
    tokens = st.sampled_from(TOKEN_LABELS).map(lambda label: world.tokens[label])
    form = draw(st.sampled_from(SESSION_FORMS))
    first = draw(tokens)
    token = first.token
    label = f"{form}({first.label})"
    if form == "cookie":
        return label, (("Cookie", f"stack-access-token={token}"),), _session(first, by_cookie=True)
    if form == "cookie_among_garbage":  # unrelated garbage is ignored
        garbage = 'theme=dark; junk={"a":[1,2]}; =x; bare; pct=%ZZ'
        cookie = f'{garbage}; stack-access-token={token}; z="'
        return label, (("Cookie", cookie),), _session(first, by_cookie=True)
    if form == "cookie_quoted":  # a quoted cookie value (RFC 6265)
        cookie = f'stack-access-token="{token}"'
        return label, (("Cookie", cookie),), _session(first, by_cookie=True)
    if form in ("sdk", "sdk_no_refresh", "sdk_raw", "sdk_mismatch"):
        refresh = "rt-" + first.label.replace(":", "-")
        cookies = [_sdk(refresh, token, encoded=form != "sdk_raw")]
        refused = None
        if form == "sdk_mismatch":  # the SDK drops an access token that is not its refresh's
            cookies.append(f"{REFRESH_COOKIE}=rt-another-sign-in")
            refused = "SDK refresh token mismatch"
        elif form != "sdk_no_refresh":
            cookies.append(f"{REFRESH_COOKIE}={refresh}")
        order = draw(st.sampled_from([1, -1]))
        cookie = "; ".join(cookies[::order])
        return label, (("Cookie", cookie),), _session(first, by_cookie=True, refused=refused)
    if form == "sdk_garbage":  # not a pair of strings: 401, whatever follows
        value = draw(
            st.sampled_from(
                ["not-json", quote('["only-one"]'), quote("[1,2]"), quote('{"a":"b"}'), "%5B"]
            )
        )
        headers: tuple[tuple[str, str], ...] = (("Cookie", f"stack-access={value}"),)
        if draw(st.booleans()):
            headers += ((draw(HEADER_NAMES), token),)
        session = _session(first, by_cookie=True, refused="bad SDK cookie")
        return f"{form}({value},{first.label})", headers, session
    if form == "header":
        return label, ((draw(HEADER_NAMES), token),), _session(first, by_cookie=False)
    second = draw(tokens)
    label = f"{form}({first.label},{second.label})"
    if form == "cookie_and_header":  # the cookie comes first and decides
        headers = (("Cookie", f"stack-access-token={token}"), (draw(HEADER_NAMES), second.token))
        return label, headers, _session(first, by_cookie=True)
    if form == "sdk_and_header":
        cookie = f"{_sdk('rt-1', token)}; {REFRESH_COOKIE}=rt-1"
        headers = (("Cookie", cookie), (draw(HEADER_NAMES), second.token))
        return label, headers, _session(first, by_cookie=True)
    if form == "cookie_and_sdk":  # stack-access-token comes before the SDK's cookie
        cookies = [f"stack-access-token={token}", _sdk("rt-2", second.token)]
        cookie = "; ".join(cookies[:: draw(st.sampled_from([1, -1]))])
        return label, (("Cookie", cookie),), _session(first, by_cookie=True)
    if form in ("repeated_cookie", "repeated_header"):  # two different values: ambiguous, 400
        refused = None if first.token == second.token else "repeated carrier"
        if form == "repeated_cookie":
            cookie = f"stack-access-token={token}; stack-access-token={second.token}"
            return label, (("Cookie", cookie),), _session(first, by_cookie=True, refused=refused)
        headers = ((draw(HEADER_NAMES), token), (draw(HEADER_NAMES), second.token))
        return label, headers, _session(first, by_cookie=False, refused=refused)
    label = f"{form}({first.label})"
    if form == "split_cookie_headers":  # HTTP/2 clients send one Cookie header per cookie
        headers = (("Cookie", "theme=dark"), ("Cookie", f"stack-access-token={token}"))
        return label, headers[:: draw(st.sampled_from([1, -1]))], _session(first, by_cookie=True)
    if form in ("garbage_cookie", "garbage_cookie_and_header"):
        value = draw(
            st.sampled_from(
                [
                    "garbage",
                    "null",
                    "a.b.c",
                    "eyJhbGciOiJub25lIn0.e30.",
                    "%ZZ",
                    token[:-20],  # cut short
                    token + "x",
                    world.keys["t1_all"].key,  # an API key is not a session token
                ]
            )
        )
        headers = (("Cookie", f"stack-access-token={value}"),)
        if form == "garbage_cookie_and_header":  # the cookie is present: the header is not read
            headers += ((draw(HEADER_NAMES), token),)
        session = Session(first.user, True, "garbage token")
        return f"{form}({value[:24]},{first.label})", headers, session
    if form == "empty_cookie_and_header":  # an empty carrier is absent: the header decides
        headers = (("Cookie", "stack-access-token="), (draw(HEADER_NAMES), token))
        return label, headers, _session(first, by_cookie=False)
    assert form == "empty_cookie"  # no credential at all
    return "empty_cookie", (("Cookie", "stack-access-token=; stack-access="),), None


@st.composite
def credentials(draw: st.DrawFn, world: World) -> Credentials:
    """An API key alone (in the forms above), a session alone, or both (the key decides)."""
    mix = draw(st.sampled_from(["key"] * 3 + ["session"] * 3 + ["both"] * 2))
    if mix == "key":
        return draw(key_credentials(world))
    label, headers, session = draw(session_credentials(world))
    keyed = draw(key_credentials(world)) if mix == "both" else None
    if keyed is None or not keyed.key_presented:
        return Credentials(f"session:{label}", headers, None, key_presented=False, session=session)
    return Credentials(
        f"{keyed.label}+{label}", keyed.headers + headers, keyed.accepted, True, session
    )


#: What a browser (or a forger) says of where a request comes from.
ORIGINS = st.sampled_from(
    [
        ("none", ()),
        ("none", ()),
        ("none", ()),
        ("same", (("Origin", "http://testserver"),)),
        ("same", (("Origin", "http://testserver"),)),
        ("same_https", (("Origin", "https://testserver"),)),
        ("dashboard", (("Origin", DASHBOARD),)),
        ("dashboard", (("Origin", DASHBOARD),)),
        ("evil", (("Origin", "https://evil.example"),)),
        ("evil", (("Origin", "https://evil.example"),)),
        ("null", (("Origin", "null"),)),
        ("lookalike", (("Origin", DASHBOARD + ".evil.example"),)),
        ("other_port", (("Origin", "http://testserver:8000"),)),
        ("referer_same", (("Referer", "http://testserver/dashboard/bookings"),)),
        ("referer_dashboard", (("Referer", DASHBOARD + "/teams/team_1"),)),
        ("referer_evil", (("Referer", "https://evil.example/http://testserver/"),)),
        ("null_and_referer_same", (("Origin", "null"), ("Referer", "http://testserver/"))),
        ("evil_and_same", (("Origin", "https://evil.example"), ("Origin", "http://testserver"))),
    ]
)

#: Mostly unsafe methods, for requests that carry a session (the CSRF check).
SESSION_METHODS = st.sampled_from(
    ["POST", "POST", "POST", "PUT", "PUT", "DELETE", "DELETE", "PATCH", "PATCH"]
    + ["post", "put", "delete", "patch", "Post"]
    + ["GET", "GET", "HEAD", "get", "OPTIONS", "TRACE", "PROPFIND", "FOO"]
)


@st.composite
def requests(draw: st.DrawFn, world: World) -> Request:
    creds = draw(credentials(world))
    session = creds.session is not None
    method = draw(SESSION_METHODS if session else METHODS)
    path = draw(paths(SESSION_MUTATIONS if session else MUTATIONS))
    queries = ["", "", "", "", "", "page", "semicolon", "ampersand"]
    query_kind = draw(st.sampled_from(queries + ["", "", "", "page"] if session else queries))
    good = world.keys["t1_all"].key
    query = {
        "": "",
        "page": "page=2",
        "semicolon": f"a=1;api_key={good}",
        "ampersand": f"a=1&api_key={good}",
    }[query_kind]
    origin_label, origin = draw(ORIGINS)
    preflight = draw(st.sampled_from([False] * (7 if session else 3) + [True]))
    extra: tuple[tuple[str, str], ...] = origin
    if preflight:
        method = draw(st.sampled_from(["OPTIONS", "OPTIONS", "options", method]))
        asked = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
        extra += (("Origin", "https://app.example"), ("Access-Control-Request-Method", asked))
    if origin_label != "none":
        creds = Credentials(
            f"{creds.label} origin={origin_label}",
            creds.headers,
            creds.accepted,
            creds.key_presented,
            creds.session,
        )
    return Request(
        method=method,
        target=f"{path}?{query}" if query else path,
        credentials=creds,
        preflight=preflight,
        extra_headers=extra,
        query_has_key=query_kind in ("semicolon", "ampersand"),
    )


def session_examples(world: World) -> list[Request]:
    """Requests every target gets first, whatever is generated: the plain ways a dashboard
    session reaches (or must not reach) each handler, so the session paths of every adapter are
    checked on every run, even with few examples."""
    bookings_1, bookings_2 = BOOKINGS.format(team="team_1"), BOOKINGS.format(team="team_2")
    staff_1 = STAFF.format(team="team_1")

    def token(label: str) -> str:
        return world.tokens[label].token

    def cookie(label: str) -> tuple[str, str]:
        return ("Cookie", f"stack-access-token={token(label)}")

    def session(
        method: str,
        target: str,
        label: str,
        headers: tuple[tuple[str, str], ...],
        *,
        by_cookie: bool = True,
        origin: str | None = None,
        key: str | None = None,
    ) -> Request:
        tokens = world.tokens[label]
        carried = Session(tokens.user, by_cookie, tokens.refused)
        accepted = None if key is None else world.keys[key].key
        if key is not None:
            headers = (("X-API-Key", world.keys[key].key), *headers)
        name = f"{'x-api-key(' + key + ')+' if key else 'session:'}example({label})"
        creds = Credentials(name, headers, accepted, key is not None, carried)
        extra = () if origin is None else (("Origin", origin),)
        return Request(method, target, creds, False, extra)

    header = ("X-Stack-Access-Token", token("good:user_1"))
    sdk_refresh = f"{REFRESH_COOKIE}=rt-1"
    sdk = ("Cookie", f"{_sdk('rt-1', token('good:admin_2'))}; {sdk_refresh}")
    return [
        session("GET", bookings_1, "good:user_1", (cookie("good:user_1"),)),
        session("HEAD", staff_1, "good:member_1", (cookie("good:member_1"),)),
        session("POST", bookings_1, "good:user_1", (cookie("good:user_1"),), origin=None),
        session("POST", bookings_1, "good:user_1", (cookie("good:user_1"),), origin=DASHBOARD),
        session("post", bookings_1, "good:user_1", (cookie("good:user_1"),), origin="null"),
        session("POST", bookings_1, "good:user_1", (header,), by_cookie=False),
        session("PUT", bookings_2, "good:admin_2", (sdk,), origin="http://testserver"),
        session("DELETE", bookings_2, "good:admin_2", (sdk,), origin="https://evil.example"),
        session("POST", bookings_1, "good:member_1", (cookie("good:member_1"),), origin=DASHBOARD),
        session("GET", staff_1, "good:user_2", (cookie("good:user_2"),)),
        session("GET", bookings_1, "expired:user_1", (cookie("expired:user_1"),)),
        session("GET", INTERNAL, "good:loner", (cookie("good:loner"),)),
        session(
            "POST",
            bookings_1,
            "good:user_1",
            (cookie("good:user_1"),),
            origin=DASHBOARD,
            key="t1_read",
        ),
        session("GET", bookings_1, "good:user_1", (header,), by_cookie=False, key="revoked"),
        session("GET", staff_1, "good:user_1", (header,), by_cookie=False, key="junk_text"),
        session("GET", bookings_1, "good:user_1", (cookie("good:user_1"),), key="junk_checksum"),
    ]
