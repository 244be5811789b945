"""SMART launch context (App Launch 2.0 §2.0.5/§2.0.7): who and what an app was launched with.

An EHR launch starts in the web UI: "Launch app" on a patient's chart creates a launch id that
carries the user, the app, the patient and (optionally) the encounter, and sends the browser to
the app's launch URL with ``iss`` and ``launch``. The app passes ``launch`` back to the
authorize endpoint, which takes the context from here. Launch ids are random (256 bits), bound
to the user and the app, valid for ``LIFETIME_S`` and usable once. ``Context`` is what a grant
carries from the authorization to every token issued from it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from medarchive.store.sql.database import Database

LIFETIME_S = 300


@dataclass(frozen=True, slots=True)
class Context:
    """The launch context of a grant; empty fields are left out of token responses."""

    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    nonce: str | None = None
    need_patient_banner: bool = False
    smart_style_url: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Context:
        data: dict[str, Any] = json.loads(text)
        return cls(data.get("patient"), data.get("encounter"), data.get("fhir_user"),
                   data.get("nonce"), bool(data.get("need_patient_banner")),
                   data.get("smart_style_url"))

    def token_fields(self) -> dict[str, Any]:
        """The context parameters of a token response (App Launch 2.0 §2.0.7 table)."""
        fields: dict[str, Any] = {}
        if self.patient:
            fields["patient"] = self.patient
            fields["need_patient_banner"] = self.need_patient_banner
        if self.encounter:
            fields["encounter"] = self.encounter
        if self.smart_style_url:
            fields["smart_style_url"] = self.smart_style_url
        return fields


@dataclass(frozen=True, slots=True)
class Launch:
    launch_id: str
    username: str
    client_id: str
    patient: str | None
    encounter: str | None


class Launches:
    """EHR launch ids in ``sec_launch``."""

    def __init__(self, db: Database, now: Callable[[], datetime]) -> None:
        self.db = db
        self.now = now
        self._sql = db.sql

    def create(self, username: str, client_id: str, patient: str | None,
               encounter: str | None = None) -> str:
        """A new launch id for ``username`` launching ``client_id``."""
        launch_id = secrets.token_urlsafe(32)
        now = int(self.now().timestamp())
        with self.db.writing() as cur:
            cur.execute(self._sql("DELETE FROM sec_launch WHERE expires < ?"), (now,))
            cur.execute(self._sql(
                "INSERT INTO sec_launch (launch_id, username, client_id, patient_id, "
                "encounter_id, expires) VALUES (?, ?, ?, ?, ?, ?)"),
                (launch_id, username, client_id, patient, encounter, now + LIFETIME_S))
        return launch_id

    def peek(self, launch_id: str, username: str, client_id: str) -> Launch | None:
        """The launch when it exists, is unexpired and belongs to this user and app."""
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT username, client_id, patient_id, encounter_id, "
                                  "expires FROM sec_launch WHERE launch_id = ?"), (launch_id,))
            row = cur.fetchone()
        if row is None or row[0] != username or row[1] != client_id \
                or int(row[4]) <= int(self.now().timestamp()):
            return None
        return Launch(launch_id, row[0], row[1], row[2], row[3])

    def take(self, launch_id: str, username: str, client_id: str) -> Launch | None:
        """Like ``peek``, and the launch id cannot be used again."""
        found = self.peek(launch_id, username, client_id)
        if found is None:
            return None
        with self.db.writing() as cur:
            cur.execute(self._sql("DELETE FROM sec_launch WHERE launch_id = ?"), (launch_id,))
            if cur.rowcount != 1:  # taken concurrently
                return None
        return found
