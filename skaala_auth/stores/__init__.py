"""Key stores: the protocol and the built-in implementations.

``PostgresKeyStore`` (for services on many machines) lives in ``skaala_auth.stores.postgres``
and is imported from there, so that psycopg stays an optional dependency.
"""

from __future__ import annotations

from .base import Change, ChangeFeed, KeyRecord, KeyStore
from .memory import MemoryKeyStore
from .sqlite import SQLiteKeyStore

__all__ = ["Change", "ChangeFeed", "KeyRecord", "KeyStore", "MemoryKeyStore", "SQLiteKeyStore"]
