"""The key-management page as served, without a browser: the same answers from every mount
(Starlette, Flask, Django), its security headers, links that resolve at any mount path, and
static files that fetch nothing from anywhere else."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

from skaala_auth import KeyManager, MemoryKeyStore, ScopeRegistry
from skaala_auth.dashboard import ASSETS, SECURITY_HEADERS, Dashboard

STATIC = Path(str(resources.files("skaala_auth.dashboard") / "static"))
DEMO_PAGES = [Path(str(resources.files("skaala_auth.demo") / "sign_in.html"))]
TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}


INVOICES = ScopeRegistry()
INVOICES.register("read:invoices", "List and read invoices")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


Get = Callable[[str, str], Reply]


def _starlette() -> Get:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from skaala_auth.starlette import dashboard_routes

    client = TestClient(Starlette(routes=dashboard_routes()))

    def get(method: str, path: str) -> Reply:
        response = client.request(method, path, follow_redirects=False)
        return Reply(response.status_code, dict(response.headers), response.content)

    return get


def _flask() -> Get:
    from flask import Flask

    from skaala_auth.flask import dashboard_blueprint

    app = Flask(__name__)
    app.register_blueprint(dashboard_blueprint())
    client = app.test_client()

    def get(method: str, path: str) -> Reply:
        response = client.open(path, method=method)
        headers = {name.lower(): value for name, value in response.headers.items()}
        return Reply(response.status_code, headers, response.get_data())

    return get


def _django_settings() -> Any:
    from django.test.utils import override_settings

    return override_settings(
        ROOT_URLCONF="tests.dashboard.django_urls",
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        # The page offers the scopes of the management API's manager.
        SKAALA_AUTH={"MANAGER": KeyManager(MemoryKeyStore(), scopes=INVOICES)},
    )


@pytest.fixture(params=["starlette", "flask", "django"])
def get(request: pytest.FixtureRequest) -> Iterator[Get]:
    if request.param == "starlette":
        yield _starlette()
    elif request.param == "flask":
        yield _flask()
    else:
        from django.test import Client

        from tests.django_settings import configure

        configure()
        with _django_settings():
            client = Client()

            def get_django(method: str, path: str) -> Reply:
                response = client.generic(method, path)
                headers = {name.lower(): value for name, value in response.headers.items()}
                return Reply(response.status_code, headers, response.content)

            yield get_django


def _links(page: bytes) -> list[str]:
    return re.findall(r'(?:href|src)="([^"]*)"', page.decode())


def _assert_secure(reply: Reply) -> None:
    for name, value in SECURITY_HEADERS:
        assert reply.headers[name] == value, name
    policy = reply.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe" not in policy and "http" not in policy  # no inline code, no other origin
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["x-frame-options"] == "DENY"


class TestServing:
    @pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/?team=team_1"])
    def test_if_the_page_is_asked_then_html_with_the_security_headers(
        self, get: Get, path: str
    ) -> None:
        reply = get("GET", path)
        assert reply.status == 200
        _assert_secure(reply)
        assert reply.headers["content-type"] == "text/html; charset=utf-8"
        assert reply.headers["cache-control"] == "no-cache"
        assert b"<title>API keys</title>" in reply.body

    @pytest.mark.parametrize("name", sorted(TYPES))
    def test_if_a_file_is_asked_then_its_type_caching_and_security_headers(
        self, get: Get, name: str
    ) -> None:
        reply = get("GET", f"/dashboard/static/{name}")
        assert reply.status == 200
        _assert_secure(reply)
        assert reply.headers["content-type"] == TYPES[name]
        assert reply.headers["cache-control"] == "public, max-age=86400"
        assert reply.body == (STATIC / name).read_bytes()
        assert int(reply.headers["content-length"]) == len(reply.body)

    @pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/static/app.js"])
    def test_if_head_is_asked_then_the_headers_of_get_and_no_body(
        self, get: Get, path: str
    ) -> None:
        full, head = get("GET", path), get("HEAD", path)
        assert head.status == 200 and head.body == b""
        assert head.headers["content-type"] == full.headers["content-type"]
        assert head.headers["content-length"] == str(len(full.body))
        _assert_secure(head)

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
    @pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/static/app.js"])
    def test_if_another_method_is_used_then_405(self, get: Get, path: str, method: str) -> None:
        reply = get(method, path)
        assert reply.status == 405
        assert reply.headers["allow"] == "GET, HEAD"
        _assert_secure(reply)

    @pytest.mark.parametrize(
        "name", ["index.html", "__init__.py", "app.js.map", "APP.JS", "..%2F__init__.py"]
    )
    def test_if_another_file_is_asked_then_404(self, get: Get, name: str) -> None:
        """Only the listed files are served: never the template, the package, a guess."""
        reply = get("GET", f"/dashboard/static/{name}")
        assert reply.status == 404
        assert b"import" not in reply.body and b"{{" not in reply.body

    @pytest.mark.parametrize("path", ["/dashboard", "/dashboard/", "/dashboard?team=t"])
    @pytest.mark.parametrize("make", [_starlette, _flask], ids=["starlette", "flask"])
    def test_if_the_page_links_its_files_then_they_resolve_from_its_own_url(
        self, make: Callable[[], Get], path: str
    ) -> None:
        """Relative links work at any mount path: /dashboard and /dashboard/ alike (Django
        redirects the first to the second)."""
        get = make()
        page = get("GET", path)
        links = [link for link in _links(page.body) if "static/" in link]
        assert len(links) == 3
        for link in links:
            resolved = urlsplit(urljoin(f"http://testserver{path}", link))
            assert resolved.path.startswith("/dashboard/static/") and resolved.query
            reply = get("GET", f"{resolved.path}?{resolved.query}")
            name = resolved.path.rsplit("/", 1)[1]
            assert reply.status == 200 and reply.headers["content-type"] == TYPES[name]

    def test_if_the_files_change_then_their_links_change(self) -> None:
        """Links carry the files' digests, so a day's caching never serves an old script."""
        page = Dashboard().page("GET", "/dashboard/").body.decode()
        for name in ASSETS:
            digest = re.search(rf"static/{re.escape(name)}\?v=([0-9a-f]{{12}})", page)
            assert digest is not None, name

    def test_if_django_mounts_it_then_the_managers_scopes_or_the_options_are_used(self) -> None:
        from django.test import Client

        from tests.django_settings import configure

        configure()
        with _django_settings():
            client = Client()
            moved = client.get("/dashboard?team=t")  # APPEND_SLASH
            assert (moved.status_code, moved["location"]) == (301, "/dashboard/?team=t")
            default = _config(client.get("/dashboard/").content)
            custom = _config(client.get("/custom/").content)
        assert default["api"] == "/api/v1" and default["notice"] is None
        assert "read:invoices" in [scope["name"] for scope in default["scopes"]]  # type: ignore[attr-defined]
        assert custom["api"] == "/manage" and custom["notice"] == "Staging"


def _config(page: bytes) -> dict[str, object]:
    found = re.search(
        rb'<script id="dashboard-config" type="application/json">(.*?)</script>', page, re.S
    )
    assert found is not None
    config: dict[str, object] = json.loads(found.group(1))
    return config


class TestConfiguration:
    def test_if_a_notice_holds_markup_then_it_cannot_close_the_data_block(self) -> None:
        notice = '</script><script>alert("x")</script><!--'
        page = Dashboard(notice=notice).page("GET", "/dashboard/").body
        assert b"<script>alert" not in page and b"</script><script>" not in page
        assert _config(page)["notice"] == notice

    def test_if_scopes_are_registered_then_the_page_offers_them(self) -> None:
        registry = ScopeRegistry()
        registry.register("read:invoices", "List and read invoices")
        config = _config(Dashboard(scopes=registry).page("GET", "/dashboard/").body)
        offered = {scope["name"]: scope["description"] for scope in config["scopes"]}  # type: ignore[attr-defined]
        assert offered["read:invoices"] == "List and read invoices"
        assert "webhooks:manage" in offered
        mapping = _config(Dashboard(scopes={"read:x": "X"}).page("GET", "/d/").body)
        assert mapping["scopes"] == [{"name": "read:x", "description": "X"}]

    @pytest.mark.parametrize(
        "prefix",
        ["https://api.example.com/api/v1", "//api.example.com/api", "api/v1", "/api?x=1",
         "/a b", "/\\\\evil", ""],
    )  # fmt: skip
    def test_if_the_api_is_not_a_path_here_then_value_error(self, prefix: str) -> None:
        """The page calls the API with the session cookie and a CSP of 'self' only."""
        with pytest.raises(ValueError, match="api_prefix"):
            Dashboard(api_prefix=prefix)

    @pytest.mark.parametrize(
        "url", ["javascript:alert(1)", "data:text/html,x", "//evil.example/", "sign-in"]
    )
    def test_if_the_sign_in_url_is_not_a_web_address_then_value_error(self, url: str) -> None:
        with pytest.raises(ValueError, match="sign_in_url"):
            Dashboard(sign_in_url=url)

    @pytest.mark.parametrize("url", ["/login", "https://auth.example.com/sign-in?x=1"])
    def test_if_the_sign_in_url_is_a_path_or_a_web_page_then_the_page_links_it(
        self, url: str
    ) -> None:
        assert _config(Dashboard(sign_in_url=url).page("GET", "/d/").body)["signInUrl"] == url


# -- the static files themselves ---------------------------------------------------------------

FILES = sorted([*STATIC.iterdir(), *DEMO_PAGES])
#: The only absolute URL allowed: the SVG namespace, a name that is never fetched.
NAMESPACES = {"http://www.w3.org/2000/svg"}


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_if_a_static_file_is_read_then_it_names_no_other_site(path: Path) -> None:
    """It must work offline: nothing fetched from a CDN, a font service or anywhere else."""
    text = path.read_text("utf-8")
    urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'`)<>]*", text))
    assert urls <= NAMESPACES, sorted(urls - NAMESPACES)
    assert "@import" not in text and "url(" not in text  # CSS fetches nothing either


@pytest.mark.parametrize("path", [STATIC / "index.html", *DEMO_PAGES], ids=lambda p: p.name)
def test_if_a_page_is_read_then_it_has_no_inline_code(path: Path) -> None:
    """The CSP refuses inline scripts, styles and handlers: the page must not need them."""
    text = path.read_text("utf-8")
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", text, re.S)
    for attributes, body in scripts:
        assert "src=" in attributes and not body.strip() or 'type="application/json"' in attributes
    assert not re.search(r"\sstyle=", text)
    assert not re.search(r"\son[a-z]+=", text)
    for link in _links(text.encode()):
        assert link.startswith("{{") or not urlsplit(link).scheme, link


def test_if_the_script_is_read_then_it_never_parses_text_as_html() -> None:
    """Names, scopes and messages come from the API: set as text, never as markup."""
    script = (STATIC / "app.js").read_text("utf-8")
    for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                  "new Function", "localStorage", "sessionStorage", "console."):  # fmt: skip
        assert risky not in script, risky
    assert 'credentials: "same-origin"' in script


def test_if_the_package_is_built_then_the_static_files_are_in_the_wheel(tmp_path: Path) -> None:
    """hatch ships every file under skaala_auth/ (nothing excludes them). The build fetches
    hatchling: without a package index it skips, except under CI=true."""
    import os
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[2]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if built.returncode != 0 and os.environ.get("CI") != "true":
        pytest.skip(f"could not build a wheel here: {built.stderr.strip()[-300:]}")
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in [*ASSETS, "index.html"]:
        assert f"skaala_auth/dashboard/static/{name}" in names
    assert "skaala_auth/demo/sign_in.html" in names


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(one: str, other: str) -> float:
    high, low = sorted([_luminance(one), _luminance(other)], reverse=True)
    return (high + 0.05) / (low + 0.05)


#: (text or mark, background, WCAG AA minimum): text 4.5:1, focus rings and borders 3:1.
PAIRS = [
    ("--text", "--panel", 4.5), ("--text", "--bg", 4.5), ("--muted", "--panel", 4.5),
    ("--muted", "--bg", 4.5), ("#ffffff", "--primary", 4.5), ("#ffffff", "--primary-dark", 4.5),
    ("#ffffff", "--danger", 4.5), ("--primary", "--panel", 4.5), ("--danger", "--panel", 4.5),
    ("--ok-text", "--ok-bg", 4.5), ("--warn-text", "--warn-bg", 4.5),
    ("--bad-text", "--bad-bg", 4.5), ("--info-text", "--info-bg", 4.5),
    ("--focus", "--panel", 3.0), ("--focus", "--bg", 3.0),
]  # fmt: skip


@pytest.mark.parametrize(("foreground", "background", "minimum"), PAIRS)
def test_if_the_colours_are_read_then_text_and_focus_meet_wcag_aa(
    foreground: str, background: str, minimum: float
) -> None:
    css = (STATIC / "app.css").read_text("utf-8")
    colours = dict(re.findall(r"(--[a-z-]+):\s*(#[0-9a-fA-F]{6})", css))
    ratio = _contrast(colours.get(foreground, foreground), colours.get(background, background))
    assert ratio >= minimum, f"{foreground} on {background}: {ratio:.2f}:1"


@pytest.mark.parametrize("framework", ["starlette", "flask"])
def test_if_mounted_at_the_root_then_the_page_is_there_and_its_files_resolve(
    framework: str,
) -> None:
    if framework == "starlette":
        from starlette.applications import Starlette
        from starlette.testclient import TestClient

        from skaala_auth.starlette import dashboard_routes

        client: Any = TestClient(Starlette(routes=dashboard_routes(path="/")))
        text = client.get("/").text
        script = client.get("/static/app.js")
    else:
        from flask import Flask

        from skaala_auth.flask import dashboard_blueprint

        app = Flask(__name__)
        app.register_blueprint(dashboard_blueprint(url_prefix="/"))
        client = app.test_client()
        text = client.get("/").get_data(as_text=True)
        script = client.get("/static/app.js")
    assert 'src="static/app.js?v=' in text
    assert script.status_code == 200 and script.headers["content-type"] == TYPES["app.js"]
