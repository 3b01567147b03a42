"""The hardening suite (issue 8): Django is configured once for the process, before the Django
apps of this package are imported."""

from __future__ import annotations

from tests.django_settings import configure

configure()
