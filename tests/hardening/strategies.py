"""Hypothesis strategies: methods, mutated paths, credentials and preflights, as an attacker
would send them."""

from __future__ import annotations

from hypothesis import strategies as st

from .world import BOOKINGS, HEALTH, INTERNAL, STAFF, Credentials, Request, World

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


@st.composite
def paths(draw: st.DrawFn) -> str:
    """A real route, then 0–3 mutations of its raw (on-the-wire) form."""
    team = draw(TEAMS)
    path = draw(
        st.sampled_from(
            [BOOKINGS, BOOKINGS, BOOKINGS, STAFF, HEALTH, INTERNAL, "/api/v1/teams/{team}"]
        )
    ).format(team=team)
    # Half of the paths as the route writes them, the rest with one to three mutations.
    mutations = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
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
def credentials(draw: st.DrawFn, world: World) -> Credentials:
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
        return Credentials("none", (), None)
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


@st.composite
def requests(draw: st.DrawFn, world: World) -> Request:
    method = draw(METHODS)
    path = draw(paths())
    query_kind = draw(st.sampled_from(["", "", "", "", "", "page", "semicolon", "ampersand"]))
    good = world.keys["t1_all"].key
    query = {
        "": "",
        "page": "page=2",
        "semicolon": f"a=1;api_key={good}",
        "ampersand": f"a=1&api_key={good}",
    }[query_kind]
    preflight = draw(st.sampled_from([False, False, False, True]))
    extra: tuple[tuple[str, str], ...] = ()
    if preflight:
        method = draw(st.sampled_from(["OPTIONS", "OPTIONS", "options", method]))
        asked = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
        extra = (("Origin", "https://app.example"), ("Access-Control-Request-Method", asked))
    return Request(
        method=method,
        target=f"{path}?{query}" if query else path,
        credentials=draw(credentials(world)),
        preflight=preflight,
        extra_headers=extra,
        query_has_key=query_kind in ("semicolon", "ampersand"),
    )
