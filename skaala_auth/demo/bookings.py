"""The demo's data: services, contacts and bookings, kept in the same SQLite file as the keys,
and the validation of a new booking.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ..keys import ALPHABET

__all__ = ["SERVICES", "BookingStore", "NewBooking", "BookingValidationError", "parse_booking"]

#: The services a booking can be for: ``(id, name, price, currency, duration in minutes)``.
SERVICES: Final = (
    ("svc_haircut", "Haircut", 35.0, "EUR", 30),
    ("svc_colour", "Colour and cut", 85.0, "EUR", 90),
    ("svc_consult", "Style consultation", 0.0, "EUR", 15),
)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS demo_services (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL, currency TEXT NOT NULL,
    duration_minutes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS demo_contacts (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL,
    phone TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (team_id, email)
);
CREATE TABLE IF NOT EXISTS demo_bookings (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL, service_id TEXT NOT NULL,
    contact_id TEXT NOT NULL, start_time TEXT NOT NULL, notes TEXT NOT NULL,
    status TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS demo_bookings_team ON demo_bookings (team_id, start_time, id);
"""

_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE: Final = re.compile(r"\+?[0-9][0-9 ()./-]{3,24}")
_FIELDS: Final = frozenset({"service_id", "start_time", "contact", "notes"})
_CONTACT_FIELDS: Final = frozenset({"name", "email", "phone"})


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(16))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class BookingValidationError(Exception):
    """The body of a new booking is not valid. ``details`` lists ``{"field", "message"}``.

    .. versionadded:: 0.1.0
    """

    def __init__(self, details: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{d['field']}: {d['message']}" for d in details))
        self.details = details


@dataclass(frozen=True, slots=True)
class NewBooking:
    """A validated booking request.

    .. versionadded:: 0.1.0
    """

    service_id: str
    start_time: datetime
    name: str
    email: str
    phone: str
    notes: str


def _text(
    errors: list[dict[str, str]],
    source: dict[str, Any],
    name: str,
    field: str,
    *,
    limit: int,
    required: bool = True,
) -> str:
    value = source.get(name)
    if value is None:
        if required:
            errors.append({"field": field, "message": "is required"})
        return ""
    if not isinstance(value, str):
        errors.append({"field": field, "message": "must be a string"})
        return ""
    value = value.strip()
    if required and not value:
        errors.append({"field": field, "message": "must not be empty"})
    elif len(value) > limit:
        errors.append({"field": field, "message": f"must be at most {limit} characters"})
    return value


def parse_booking(payload: object, service_ids: Collection[str]) -> NewBooking:
    """Validate the JSON body of ``POST …/bookings``.

    Raises:
        BookingValidationError: with every problem found, not just the first.

    .. versionadded:: 0.1.0
    """
    if not isinstance(payload, dict):
        raise BookingValidationError([{"field": "body", "message": "must be a JSON object"}])
    errors = [
        {"field": name, "message": "is not a known field"}
        for name in sorted(set(payload) - _FIELDS)
    ]
    service_id = _text(errors, payload, "service_id", "service_id", limit=64)
    if service_id and service_id not in service_ids:
        errors.append(
            {"field": "service_id", "message": "is not a service: GET /api/v1/services lists them"}
        )
    start_text = _text(errors, payload, "start_time", "start_time", limit=64)
    start = datetime.min.replace(tzinfo=UTC)
    if start_text:
        try:
            start = datetime.fromisoformat(start_text)
        except ValueError:
            errors.append(
                {"field": "start_time", "message": "must be ISO 8601, e.g. 2030-01-31T10:00:00Z"}
            )
        else:
            if start.tzinfo is None:
                errors.append(
                    {"field": "start_time", "message": "needs a time zone, e.g. a trailing Z"}
                )
    contact = payload.get("contact")
    name = email = phone = ""
    if not isinstance(contact, dict):
        message = "is required" if contact is None else "must be an object"
        errors.append({"field": "contact", "message": message})
    else:
        errors.extend(
            {"field": f"contact.{name}", "message": "is not a known field"}
            for name in sorted(set(contact) - _CONTACT_FIELDS)
        )
        name = _text(errors, contact, "name", "contact.name", limit=200)
        email = _text(errors, contact, "email", "contact.email", limit=254)
        if email and not _EMAIL.fullmatch(email):
            errors.append({"field": "contact.email", "message": "is not an email address"})
        phone = _text(errors, contact, "phone", "contact.phone", limit=32, required=False)
        if phone and not _PHONE.fullmatch(phone):
            errors.append({"field": "contact.phone", "message": "is not a phone number"})
    notes = _text(errors, payload, "notes", "notes", limit=2000, required=False)
    if errors:
        raise BookingValidationError(errors)
    return NewBooking(service_id, start, name, email.lower(), phone, notes)


class BookingStore:
    """Services, contacts and bookings in a SQLite file (the key database, by default).

    Thread-safe: one connection behind a lock (the demo calls it from worker threads).

    .. versionadded:: 0.1.0
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            os.fspath(path), timeout=5.0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout = 5000")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.executemany(
                "INSERT OR IGNORE INTO demo_services VALUES (?, ?, ?, ?, ?)", SERVICES
            )
            self._conn.execute("COMMIT")

    def services(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM demo_services ORDER BY id").fetchall()
        return [
            {"id": r[0], "name": r[1], "price": r[2], "currency": r[3], "duration_minutes": r[4]}
            for r in rows
        ]

    def service_ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._conn.execute("SELECT id FROM demo_services")}

    def bookings(self, team_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT b.id, b.team_id, b.service_id, b.start_time, b.notes, b.status, "
                "b.created_at, c.id, c.name, c.email, c.phone FROM demo_bookings b "
                "JOIN demo_contacts c ON c.id = b.contact_id WHERE b.team_id = ? "
                "ORDER BY b.start_time, b.id",
                (team_id,),
            ).fetchall()
        return [_booking(row) for row in rows]

    def contacts(self, team_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, name, email, phone, created_at FROM demo_contacts WHERE team_id = ? "
                "ORDER BY name, id",
                (team_id,),
            ).fetchall()
        return [
            {"id": r[0], "name": r[1], "email": r[2], "phone": r[3] or None, "created_at": r[4]}
            for r in rows
        ]

    def create_booking(self, team_id: str, booking: NewBooking) -> dict[str, Any]:
        """Store a booking; its contact is created, or updated when the email is known."""
        now = _iso(datetime.now(UTC))
        booking_id = _new_id("bk_")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO demo_contacts VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (team_id, email) DO UPDATE SET name = excluded.name, "
                    "phone = CASE WHEN excluded.phone != '' THEN excluded.phone ELSE phone END",
                    (_new_id("ct_"), team_id, booking.name, booking.email, booking.phone, now),
                )
                contact_id = self._conn.execute(
                    "SELECT id FROM demo_contacts WHERE team_id = ? AND email = ?",
                    (team_id, booking.email),
                ).fetchone()[0]
                self._conn.execute(
                    "INSERT INTO demo_bookings VALUES (?, ?, ?, ?, ?, ?, 'confirmed', ?)",
                    (
                        booking_id,
                        team_id,
                        booking.service_id,
                        contact_id,
                        _iso(booking.start_time),
                        booking.notes,
                        now,
                    ),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            row = self._conn.execute(
                "SELECT b.id, b.team_id, b.service_id, b.start_time, b.notes, b.status, "
                "b.created_at, c.id, c.name, c.email, c.phone FROM demo_bookings b "
                "JOIN demo_contacts c ON c.id = b.contact_id WHERE b.id = ?",
                (booking_id,),
            ).fetchone()
        return _booking(row)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _booking(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": row[0],
        "team_id": row[1],
        "service_id": row[2],
        "start_time": row[3],
        "contact": {"id": row[7], "name": row[8], "email": row[9], "phone": row[10] or None},
        "notes": row[4],
        "status": row[5],
        "created_at": row[6],
    }
