"""Keep API keys and dashboard session tokens out of Django's error reports: the ``DEBUG``
page and the ``ADMINS`` e-mails.

Django cleanses ``request.META`` by name — ``HTTP_AUTHORIZATION`` matches ``AUTH`` and
``HTTP_X_API_KEY`` matches ``API`` and ``KEY`` in ``SafeExceptionReporterFilter.hidden_settings``
— but shows the local variables of every frame of the traceback, and while a request is being
authenticated the key is a local variable of frames below the adapter (the core's). Django's
``sensitive_variables`` cannot hide those: it names variables of the decorated function only
(our adapter frames hold no key: ``request`` shows as ``<WSGIRequest: GET '/path'>``), and the
default filter ignores it when ``DEBUG`` is true, which is when the page is shown.

So every request the adapter reads gets, through Django's documented per-request hook
``request.exception_reporter_filter``, a filter that wraps the project's own (the
``DEFAULT_EXCEPTION_REPORTER_FILTER``, or a filter the request already had) and cleanses, in
every mode, any frame variable and any ``META`` value whose text holds a key (or a prefix and 16
characters of one: :func:`skaala_auth.keys.looks_like_key`). Everything else is the wrapped
filter's answer.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import re
from typing import Any, Final

from django.views.debug import SafeExceptionReporterFilter, get_default_exception_reporter_filter

from ..keys import looks_like_key

__all__ = ["KeyCleansingFilter", "protect_report"]

_SUBSTITUTE: Final = SafeExceptionReporterFilter.cleansed_substitute


#: A dashboard session's access token as it travels: a JWS whose header starts ``{"`` (base64url
#: ``eyJ``), raw or inside the SDK's URL-encoded cookie.
_SESSION_TOKEN: Final = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.")


def _secret(text: str) -> bool:
    return looks_like_key(text) or _SESSION_TOKEN.search(text) is not None


def _shows_key(value: object) -> bool:
    """Whether a value, as an error report prints it, gives a key (or a session token) away."""
    if isinstance(value, str):
        return _secret(value)
    if isinstance(value, bytes | bytearray):
        return _secret(bytes(value).decode("latin-1"))
    try:
        text = repr(value)  # what the report's pprint shows, for containers and objects alike
    except Exception:  # the report shows its own placeholder for an unprintable value
        return False
    return _secret(text)


class KeyCleansingFilter:
    """An exception reporter filter that never shows a key, wrapping another one.

    Args:
        inner: the filter to wrap; ``None`` for the project's default
            (``DEFAULT_EXCEPTION_REPORTER_FILTER``), looked up when a report is made.

    .. versionadded:: 0.1.0
    """

    def __init__(self, inner: Any = None) -> None:
        self._inner = inner

    @property
    def inner(self) -> Any:
        if self._inner is not None:
            return self._inner
        default = get_default_exception_reporter_filter()
        # Configured as the project's default itself: wrap Django's, never ourselves.
        return SafeExceptionReporterFilter() if isinstance(default, KeyCleansingFilter) else default

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> list[tuple[str, Any]]:
        inner = self.inner
        substitute = getattr(inner, "cleansed_substitute", _SUBSTITUTE)
        return [
            (name, substitute if _shows_key(value) else value)
            for name, value in inner.get_traceback_frame_variables(request, tb_frame)
        ]

    def get_safe_request_meta(self, request: Any) -> dict[str, Any]:
        inner = self.inner
        substitute = getattr(inner, "cleansed_substitute", _SUBSTITUTE)
        return {
            name: substitute if _shows_key(value) else value
            for name, value in inner.get_safe_request_meta(request).items()
        }

    def get_safe_cookies(self, request: Any) -> dict[str, Any]:
        """The cookies, with the dashboard session's (``stack-access``, ``stack-refresh-…``:
        names Django's filter does not match) and any value holding a secret cleansed."""
        inner = self.inner
        substitute = getattr(inner, "cleansed_substitute", _SUBSTITUTE)
        get_safe_cookies = getattr(inner, "get_safe_cookies", None)
        if get_safe_cookies is None:  # a filter from before Django 4.2
            return {}
        return {
            name: substitute if name.startswith("stack-") or _shows_key(value) else value
            for name, value in get_safe_cookies(request).items()
        }


#: The filter most requests get: it wraps the project's default.
_DEFAULT: Final = KeyCleansingFilter()


def protect_report(request: Any) -> None:
    """Give ``request`` a :class:`KeyCleansingFilter` (around the filter it had, if any), once.

    .. versionadded:: 0.1.0
    """
    had = request.__dict__.get("exception_reporter_filter")
    if had is None:
        request.exception_reporter_filter = _DEFAULT
    elif not isinstance(had, KeyCleansingFilter):
        request.exception_reporter_filter = KeyCleansingFilter(had)
