"""Django's error reports never show a key (issue 9, "Frame locals"): the technical 500 page
(``DEBUG = True``) and the ``ADMINS`` e-mails (``DEBUG = False``), for exceptions raised where
a real app raises while a key is in flight — in the view after authentication (middleware,
``@requires_scope``, the mixin, DRF), in a rate limiter, in a store, in an audit hook or the
audit log."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from tests.django_settings import configure

configure()

from asgiref.sync import async_to_sync  # noqa: E402
from django.core import mail  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.test import AsyncClient, Client, RequestFactory  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils.log import AdminEmailHandler  # noqa: E402
from django.views import View  # noqa: E402
from django.views.debug import (  # noqa: E402
    ExceptionReporter,
    SafeExceptionReporterFilter,
    technical_500_response,
)
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore, Principal  # noqa: E402
from skaala_auth.audit import AuditEvent  # noqa: E402
from skaala_auth.django import ScopeRequiredMixin, get_authenticator, requires_scope  # noqa: E402
from skaala_auth.django.reporting import KeyCleansingFilter, protect_report  # noqa: E402
from skaala_auth.django.rest_framework import ApiKeyAuthentication, HasScopes  # noqa: E402
from skaala_auth.keys import display_prefix  # noqa: E402

STARS = SafeExceptionReporterFilter.cleansed_substitute


class BoomError(Exception):
    """What a view, a store or a limiter raises: a bug, a database gone."""


def pieces(text: str, key: str) -> list[str]:
    """The 12-character pieces of the key's secret that ``text`` shows (none, or a leak)."""
    secret = key[8:40]
    return [secret[i : i + 12] for i in range(21) if secret[i : i + 12] in text]


# -- the project ---------------------------------------------------------------------------------


def plain(request: HttpRequest) -> HttpResponse:
    assert request.principal is not None  # authenticated by the middleware
    raise BoomError("the view failed after authentication")


@requires_scope("read:bookings")
def decorated(request: HttpRequest, team_id: str) -> HttpResponse:
    raise BoomError("the decorated view failed")


@requires_scope("read:bookings")
async def decorated_async(request: HttpRequest, team_id: str) -> HttpResponse:
    raise BoomError("the async view failed")


class Mixin(ScopeRequiredMixin, View):
    required_scopes = ["read:bookings"]

    def get(self, request: HttpRequest, team_id: str) -> HttpResponse:
        raise BoomError("the class-based view failed")


class Drf(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScopes("read:bookings")]

    def get(self, request: Request, team_id: str) -> Response:
        assert isinstance(request.auth, Principal)
        raise BoomError("the DRF view failed")


def direct(request: HttpRequest) -> JsonResponse:
    """A view that asks the core itself (public to the middleware): a store fault raises."""
    principal = get_authenticator().authenticate(request.headers)
    return JsonResponse({"key_id": principal.key_id})


urls = types.ModuleType("urls")
urls.urlpatterns = [  # type: ignore[attr-defined]
    path("plain", plain),
    path("direct", direct),
    path("teams/<str:team_id>/decorated", decorated),
    path("teams/<str:team_id>/decorated-async", decorated_async),
    path("teams/<str:team_id>/mixin", Mixin.as_view()),
    path("teams/<str:team_id>/drf", Drf.as_view()),
]

MIDDLEWARE = ["skaala_auth.django.ApiKeyMiddleware"]


class FlakyStore(MemoryKeyStore):
    """Fails look-ups once ``down`` is set, keeping what it raised."""

    down = False
    raised: list[BaseException]

    def __init__(self) -> None:
        super().__init__()
        self.raised = []

    def find_key(self, digest: str):  # type: ignore[no-untyped-def]
        if self.down:
            error = BoomError("the database is gone")
            self.raised.append(error)
            raise error
        return super().find_key(digest)


class BrokenLimiter:
    """A rate limiter whose backend is down (Redis unreachable): raises, not a refusal."""

    def __init__(self) -> None:
        self.down = True

    def check(self, principal: Principal, now: float) -> None:
        if self.down:
            raise BoomError("redis: connection refused")


class BrokenAuditLog(logging.Filter):
    """A filter on the ``skaala_auth.audit`` logger that raises once armed: a log pipeline with
    a bug, the fault that still propagates out of the core while it holds a key."""

    armed = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.armed:
            raise BoomError("the log pipeline is broken")
        return True


@pytest.fixture
def broken_audit_log() -> Iterator[BrokenAuditLog]:
    logger = logging.getLogger("skaala_auth.audit")
    level, broken = logger.level, BrokenAuditLog()
    logger.setLevel(logging.DEBUG)  # successes are audited (at DEBUG) only when someone listens
    logger.addFilter(broken)
    try:
        yield broken
    finally:
        logger.removeFilter(broken)
        logger.setLevel(level)


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


@pytest.fixture
def key(manager: KeyManager) -> str:
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    return key


def project(auth: Authenticator, *, middleware: bool = True, **settings: Any) -> Any:
    options: dict[str, Any] = {"AUTHENTICATOR": auth, "PUBLIC": ["/direct"]}
    return override_settings(
        DEBUG=True,
        ROOT_URLCONF=urls,
        MIDDLEWARE=MIDDLEWARE if middleware else [],
        SKAALA_AUTH=options,
        **settings,
    )


def debug_page(path: str, key: str, header: str = "Authorization") -> HttpResponse:
    """The technical 500 page Django answers with, as a browser gets it."""
    value = f"Bearer {key}" if header == "Authorization" else key
    reply = Client(raise_request_exception=False).get(path, headers={header: value})
    assert reply.status_code == 500
    assert b"Traceback" in reply.content and b"Local vars" in reply.content  # DEBUG's page
    return reply


# -- the tests -----------------------------------------------------------------------------------

VIEWS = [
    pytest.param("/plain", True, id="middleware"),
    pytest.param("/teams/team_1/decorated", True, id="decorator"),
    pytest.param("/teams/team_1/decorated", False, id="decorator-without-middleware"),
    pytest.param("/teams/team_1/mixin", True, id="mixin"),
    pytest.param("/teams/team_1/drf", False, id="drf"),
    pytest.param("/teams/team_1/drf", True, id="drf-with-middleware"),
]


class TestDebugPage:
    @pytest.mark.parametrize(("path", "middleware"), VIEWS)
    @pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
    def test_if_a_view_raises_after_authentication_then_the_page_shows_no_key(
        self, auth: Authenticator, key: str, path: str, middleware: bool, header: str
    ) -> None:
        with project(auth, middleware=middleware):
            page = debug_page(path, key, header).content.decode()
        assert pieces(page, key) == []
        assert "BoomError" in page

    def test_if_the_headers_are_on_the_page_then_cleansed_by_name(
        self, auth: Authenticator, key: str
    ) -> None:
        request = RequestFactory().get(
            "/plain", headers={"Authorization": f"Bearer {key}", "X-API-Key": key}
        )
        with project(auth):
            try:
                raise BoomError("anywhere")
            except BoomError as error:
                reporter = ExceptionReporter(request, type(error), error, error.__traceback__)
        meta = reporter.filter.get_safe_request_meta(request)
        # Django's own filter hides both by name (AUTH; API and KEY), ours on top of it.
        assert meta["HTTP_AUTHORIZATION"] == meta["HTTP_X_API_KEY"] == STARS

    @pytest.mark.parametrize("path", ["/plain", "/teams/team_1/decorated"])
    def test_if_the_audit_log_raises_on_a_cached_key_then_the_page_shows_no_key(
        self, store: FlakyStore, clock: Any, key: str, path: str, broken_audit_log: Any
    ) -> None:
        # A logging filter that raises while the core audits a cached grant is a 500 through
        # the core's frames. They hold no key (Flow.start drops it before the audit), and the
        # request's reporter filter cleanses whatever else would show one (the header list
        # Flow.headers was handed).
        with Authenticator(store, clock=clock) as auth, project(auth, middleware=path == "/plain"):
            warm = Client(raise_request_exception=False).get(path, headers={"X-API-Key": key})
            assert warm.status_code == 500 and b"failed" in warm.content  # the view's fault
            broken_audit_log.armed = True
            page = debug_page(path, key).content.decode()
        assert "the log pipeline is broken" in page
        assert pieces(page, key) == []
        assert "Flow" in page  # the core's frames are on the page, with their variables

    def test_if_the_rate_limiter_raises_then_503_and_its_logged_traceback_shows_no_key(
        self, store: FlakyStore, clock: Any, key: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        with Authenticator(store, clock=clock, rate_limiter=BrokenLimiter()) as auth:
            with project(auth), caplog.at_level(logging.WARNING, logger="skaala_auth"):
                reply = Client().get("/plain", headers={"X-API-Key": key})
        assert reply.status_code == 503
        record = next(r for r in caplog.records if r.exc_info)
        assert record.exc_info is not None
        with override_settings(DEBUG=True):
            page = ExceptionReporter(None, *record.exc_info).get_traceback_html()
        assert "redis: connection refused" in page and "Local vars" in page
        assert pieces(page, key) == []

    def test_if_the_store_raises_under_the_middleware_then_503_and_no_page(
        self, store: FlakyStore, auth: Authenticator, key: str
    ) -> None:
        store.down = True
        with project(auth):
            reply = Client(raise_request_exception=False).get("/plain", headers={"X-API-Key": key})
        assert reply.status_code == 503 and reply.json()["error"] == "service_unavailable"
        assert len(store.raised) == 1  # it did raise, and the fault never became a page

    def test_if_a_view_asks_the_core_and_the_store_raises_then_the_page_shows_no_key(
        self, store: FlakyStore, auth: Authenticator, key: str
    ) -> None:
        # The page shows the StoreUnavailableError and, chained, what the store raised, with
        # every frame from the view down to the store.
        store.down = True
        with project(auth):
            page = debug_page("/direct", key).content.decode()
        assert "StoreUnavailableError" in page and "the database is gone" in page
        assert "find_key" in page
        assert pieces(page, key) == []

    def test_if_an_async_view_raises_then_the_page_shows_no_key(
        self, auth: Authenticator, key: str
    ) -> None:
        async def get() -> Any:
            client = AsyncClient(raise_request_exception=False)
            return await client.get(
                "/teams/team_1/decorated-async", headers={"Authorization": f"Bearer {key}"}
            )

        with project(auth):
            reply = async_to_sync(get)()
        assert reply.status_code == 500 and b"the async view failed" in reply.content
        assert pieces(reply.content.decode(), key) == []

    def test_if_the_audit_hook_raises_then_the_logged_traceback_shows_no_key(
        self, store: FlakyStore, clock: Any, key: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        def hook(event: AuditEvent) -> None:
            raise BoomError("the audit sink is down")

        with Authenticator(store, clock=clock, audit=hook) as auth, project(auth):
            with caplog.at_level(logging.ERROR, logger="skaala_auth"):
                reply = Client(raise_request_exception=False).get(
                    "/teams/team_1/decorated", headers={"X-API-Key": key}
                )
                assert reply.status_code == 500  # the view raised; the hook did not stop it
        record = next(r for r in caplog.records if r.getMessage() == "the audit hook raised")
        assert record.exc_info is not None
        with override_settings(DEBUG=True):
            page = ExceptionReporter(None, *record.exc_info).get_traceback_html()
        assert "the audit sink is down" in page
        assert pieces(page, key) == []


class TestAdminEmails:
    @pytest.fixture
    def mailed(self) -> Iterator[list[Any]]:
        """Django's ``mail_admins`` handler (in Django's default LOGGING already, text only), and
        one that attaches the HTML report as well."""
        handler = AdminEmailHandler(include_html=True)
        logger = logging.getLogger("django.request")
        logger.addHandler(handler)
        try:
            with override_settings(
                ADMINS=[("Ops", "ops@example.com")],
                EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
            ):
                mail.outbox = []
                yield mail.outbox
        finally:
            logger.removeHandler(handler)

    def test_if_debug_is_off_then_the_error_email_shows_no_key(
        self, store: FlakyStore, clock: Any, key: str, mailed: list[Any], broken_audit_log: Any
    ) -> None:
        with Authenticator(store, clock=clock) as auth:
            assert auth.verify(key).key_id  # cached: the audit runs in the core's hot path
            broken_audit_log.armed = True
            with project(auth, middleware=False), override_settings(DEBUG=False):
                reply = Client(raise_request_exception=False).get(
                    "/teams/team_1/decorated", headers={"X-API-Key": key}
                )
        assert reply.status_code == 500 and key.encode() not in reply.content
        assert len(mailed) == 2
        for message in mailed:
            text = message.subject + message.body + "".join(a[0] for a in message.alternatives)
            assert "the log pipeline is broken" in text
            assert pieces(text, key) == []
        html = next(message for message in mailed if message.alternatives).alternatives[0][0]
        assert "in start" in html  # the core's frames are in the report, and show no key


class TestFilter:
    def test_if_a_request_is_read_then_it_gets_the_filter_once_around_its_own(self) -> None:
        request = RequestFactory().get("/")
        protect_report(request)
        first = request.exception_reporter_filter
        protect_report(request)
        assert isinstance(first, KeyCleansingFilter) and request.exception_reporter_filter is first

        own = SafeExceptionReporterFilter()
        other = RequestFactory().get("/")
        other.exception_reporter_filter = own
        protect_report(other)
        assert other.exception_reporter_filter.inner is own

    def test_if_it_is_the_projects_default_then_it_wraps_djangos(self) -> None:
        default = "skaala_auth.django.reporting.KeyCleansingFilter"
        from django.views.debug import get_default_exception_reporter_filter

        get_default_exception_reporter_filter.cache_clear()
        try:
            with override_settings(DEFAULT_EXCEPTION_REPORTER_FILTER=default):
                wrapper = get_default_exception_reporter_filter()
                assert isinstance(wrapper, KeyCleansingFilter)
                assert type(wrapper.inner) is SafeExceptionReporterFilter
                assert wrapper.cleansed_substitute == STARS
        finally:
            get_default_exception_reporter_filter.cache_clear()

    def test_if_values_show_a_key_whatever_their_type_then_cleansed(self, key: str) -> None:
        class Unprintable:
            def __repr__(self) -> str:
                raise RuntimeError("no repr")

        def frame_holding(key: str) -> Any:
            text = f"token={key}"
            data = key.encode()
            buffer = bytearray(data)
            headers = [("authorization", f"Bearer {key}")]
            prefix_only = display_prefix(key)
            odd = Unprintable()
            del text, buffer, headers, prefix_only, odd  # kept by the frame, as in a traceback
            return sys._getframe()

        request = RequestFactory().get("/", headers={"Referer": f"https://x/?k={key}"})
        cleansed = KeyCleansingFilter(SafeExceptionReporterFilter())
        with override_settings(DEBUG=True):
            variables = dict(cleansed.get_traceback_frame_variables(request, frame_holding(key)))
            meta = cleansed.get_safe_request_meta(request)
        hidden = {name for name, value in variables.items() if value == STARS}
        assert hidden == {"key", "data"}
        assert meta["HTTP_REFERER"] == STARS


def test_technical_500_response_renders_with_the_filter(auth: Authenticator, key: str) -> None:
    """The page as ``technical_500_response`` builds it for a request our adapter read."""
    request = RequestFactory().get("/", headers={"X-API-Key": key})
    protect_report(request)

    def failing(secret: str) -> None:
        raise BoomError("failed")

    with override_settings(DEBUG=True):
        try:
            failing(key)
        except BoomError as error:
            page = technical_500_response(request, type(error), error, error.__traceback__)
    assert pieces(page.content.decode(), key) == []


class TestSessionTokens:
    """A dashboard session's tokens stay off the page too: Django's filter hides the
    ``stack-access-token`` cookie by name (``TOKEN``), not the SDK's ``stack-access`` and
    ``stack-refresh-…`` cookies, nor a frame variable that holds the token."""

    @pytest.mark.parametrize("path", ["/plain", "/teams/team_1/decorated"])
    def test_if_a_view_raises_for_a_session_then_the_page_shows_no_token(
        self, store: FlakyStore, clock: Any, manager: KeyManager, path: str
    ) -> None:
        import urllib.parse

        from skaala_auth.testing import SessionKit

        kit = SessionKit(project_id="p", clock=clock)
        manager.add_member(team_id="team_1", user_id="owner_1", role="owner")
        token = kit.mint("owner_1")
        refresh = "refresh-secret-0123456789abcdef"
        sdk = urllib.parse.quote(f'["{refresh}","{token}"]')
        cookies = f"stack-access={sdk}; stack-refresh-p={refresh}"
        with Authenticator(store, clock=clock, session_verifier=kit.verifier()) as auth:
            with project(auth):
                reply = Client(raise_request_exception=False).get(path, headers={"Cookie": cookies})
        page = reply.content.decode()
        assert reply.status_code == 500 and "BoomError" in page
        signature = token.rsplit(".", 1)[1]
        for secret in (signature[:24], token[:60], refresh):
            assert secret not in page
            assert urllib.parse.quote(secret) not in page
