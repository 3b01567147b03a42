# ruff: noqa: E501 - a drawing: one shape per line reads better than wrapped calls
"""Draws docs/img/request-flow.svg: how a request is decided, the key and the session branches,
with their bounds. Run it after changing the flow: ``python tools/draw_request_flow.py``."""

from html import escape
from pathlib import Path

W, H = 1100, 900
out = []


def box(x, y, w, h, title, lines=(), fill="#eef4ff", stroke="#3b5b92"):
    out.append(
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
    )
    out.append(
        f'<text x="{x + w / 2}" y="{y + 20}" text-anchor="middle" class="t">{escape(title)}</text>'
    )
    for i, line in enumerate(lines):
        out.append(
            f'<text x="{x + w / 2}" y="{y + 38 + i * 15}" text-anchor="middle" class="s">{escape(line)}</text>'
        )


def arrow(x1, y1, x2, y2, label="", dx=6, dy=-4, anchor="start"):
    out.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" class="a" marker-end="url(#m)"/>')
    if label:
        mx, my = (x1 + x2) / 2 + dx, (y1 + y2) / 2 + dy
        out.append(
            f'<text x="{mx}" y="{my}" class="l" text-anchor="{anchor}">{escape(label)}</text>'
        )


def path(d, label="", lx=0, ly=0, anchor="start"):
    out.append(f'<path d="{d}" class="a" fill="none" marker-end="url(#m)"/>')
    if label:
        out.append(
            f'<text x="{lx}" y="{ly}" class="l" text-anchor="{anchor}">{escape(label)}</text>'
        )


RED = ("#fdecec", "#a33")
GREEN = ("#e9f7ee", "#2e7d4f")
GREY = ("#f4f4f4", "#666")
# column centres
KX, SX = 300, 800
BW = 330
# top
box(
    330,
    15,
    440,
    58,
    "Request, as the server hands it over",
    ["adapter → RequestFacts: method, routed path, headers, path params"],
    *GREY,
)
arrow(550, 73, 550, 100)
box(
    375,
    100,
    350,
    72,
    "What the handler needs (core: flow.requirement)",
    [
        "public path · CORS preflight (answered 204) · rules table",
        "or the endpoint: scopes, team in path, credentials, roles",
    ],
)
arrow(550, 172, 550, 200)
box(
    375,
    200,
    350,
    58,
    "Credentials (extract_key)",
    [
        "Bearer or X-API-Key, exactly one; none in the query",
        "two credentials, a repeated header → 400",
    ],
)
path(f"M 450 258 L {KX} 300", "an API key: it decides", 250, 284, "end")
path(f"M 650 258 L {SX} 300", "no key: the session, if any", 760, 284)
# key column
x = KX - BW / 2
box(
    x,
    300,
    BW,
    58,
    "Shape: prefix, length, alphabet",
    ["sk_live_ + 38 base62; anything else → 401, nothing looked up"],
)
arrow(KX, 358, KX, 380)
box(
    x,
    380,
    BW,
    58,
    "Digest (SHA-256, or keyed with a pepper)",
    ["the plaintext stops here: caches, store and logs see digests"],
)
arrow(KX, 438, KX, 460)
box(
    x,
    460,
    BW,
    58,
    "Positive cache (fresh ≤ cache_ttl, 30 s)",
    ["a hit proves an issued key: straight to the decision"],
)
path(f"M {x} 489 C {x - 70} 489, {x - 70} 750, {x} 750", "hit", x - 62, 620, "end")
arrow(KX, 518, KX, 540, "miss")
box(
    x,
    540,
    BW,
    58,
    "Checksum (CRC32) · negative cache (5 s)",
    ["bad checksum or known unknown → 401, no store call"],
)
arrow(KX, 598, KX, 620)
box(
    x,
    620,
    BW,
    72,
    "Store look-up (one in flight per digest)",
    ["in a worker thread, ≤ store_timeout (5 s)", "down, slow or raising → 503, never 200 or 401"],
    *GREY,
)
arrow(KX, 692, KX, 714)
box(
    x,
    714,
    BW,
    72,
    "Decision",
    [
        "expired · revoked · user left the team → 401/403",
        "scopes (AND) · team in path → 403; then rate limit → 429",
    ],
)
# session column
x = SX - BW / 2
box(
    x,
    300,
    BW,
    58,
    "Session token (cookie, SDK cookie, header)",
    ["none: 401 where required, else anonymous"],
)
arrow(SX, 358, SX, 380)
box(
    x,
    380,
    BW,
    72,
    "Verify ES256 offline (verified-token cache)",
    [
        "JWKS by kid, refetched ≤ once per 5 s; down → 503",
        "exp/nbf/iat, audience, issuer → else 401",
    ],
)
arrow(SX, 452, SX, 474)
box(
    x,
    474,
    BW,
    58,
    "CSRF: a cookie on an unsafe method",
    ["needs an Origin of its own host or allowed_origins → else 403"],
)
arrow(SX, 532, SX, 554)
box(
    x,
    554,
    BW,
    72,
    "Role in the team of the path",
    [
        "the store's members (cached ≤ cache_ttl, dropped on change)",
        "not a member → 403; store down → 503",
    ],
    *GREY,
)
arrow(SX, 626, SX, 648)
box(
    x,
    648,
    BW,
    58,
    "Scopes by role, endpoint roles",
    ["owner/admin: every scope, member: read:* → else 403"],
)
# answers
path(f"M {KX} 786 L {KX} 810 L 470 840", "", 0, 0)
path(f"M {SX} 706 L {SX} 810 L 630 840", "", 0, 0)
box(
    375,
    840,
    350,
    50,
    "Granted: the handler runs with the Principal",
    ["else the contract's JSON answer; the handler never runs"],
    *GREEN,
)
# bounds box
box(
    20,
    815,
    250,
    80,
    "Bounds",
    [
        "revoke: this process at once; others ≤ 1 s",
        "(SQLite data_version, PostgreSQL NOTIFY);",
        "changes no one announced ≤ cache_ttl",
    ],
    "#fffbe6",
    "#9a7b00",
)

svg = f'''<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-labelledby="title desc">
<title id="title">How skaala_auth decides a request</title>
<desc id="desc">From the request to the requirement, the credentials, then either the API-key path (shape, digest, caches, checksum, store, decision) or the session path (token, verification, CSRF, role, scopes), to the granted handler or the contract's answer.</desc>
<style>
.t {{ font: 600 13px sans-serif; fill: #1b2a41; }}
.s {{ font: 11.5px sans-serif; fill: #333; }}
.l {{ font: italic 11.5px sans-serif; fill: #3b5b92; }}
.a {{ stroke: #3b5b92; stroke-width: 1.6; }}
</style>
<defs><marker id="m" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#3b5b92"/></marker></defs>
<rect width="100%" height="100%" fill="#ffffff"/>
{chr(10).join(out)}
</svg>
'''
Path(__file__).resolve().parent.parent.joinpath("docs", "img", "request-flow.svg").write_text(svg)
