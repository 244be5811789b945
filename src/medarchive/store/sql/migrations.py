"""Versioned schema migrations, applied in order and recorded in ``schema_migrations``.

Each dialect has a folder of numbered SQL files (``0001_initial.sql``, ...); a migration whose SQL
is the same for every dialect lives once in ``common/``. ``migrate`` applies
the ones not yet recorded, each in its own transaction, and is safe to run at every start and
from several processes at once (the version row's primary key makes the second runner fail its
transaction; it then re-reads and finds nothing left to do).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from medarchive.store.sql.database import Database


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available(dialect: str) -> list[Migration]:
    """The dialect's migrations and the common ones, in version order (numbers never repeat)."""
    root = resources.files("medarchive.store.sql") / "migrations"
    found: dict[int, Migration] = {}
    for folder in (root / "common", root / dialect):
        for entry in folder.iterdir():
            if entry.name.endswith(".sql"):
                number, _, rest = entry.name.partition("_")
                if int(number) in found:
                    raise RuntimeError(f"migration {number} exists twice for {dialect}")
                found[int(number)] = Migration(int(number), rest.removesuffix(".sql"),
                                               entry.read_text())
    return sorted(found.values(), key=lambda m: m.version)


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


def applied(db: Database) -> set[int]:
    with db.writing() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
        cur.execute("SELECT version FROM schema_migrations")
        return {row[0] for row in cur.fetchall()}


def migrate(db: Database) -> list[Migration]:
    """Apply every pending migration; return the ones this call applied."""
    done = applied(db)
    ran = []
    for migration in available(db.dialect):
        if migration.version in done:
            continue
        try:
            with db.writing() as cur:
                cur.execute(db.sql("INSERT INTO schema_migrations (version, name, applied_at) "
                                   "VALUES (?, ?, CURRENT_TIMESTAMP)"),
                            (migration.version, migration.name))
                for statement in _statements(migration.sql):
                    cur.execute(statement)
        except Exception:
            if migration.version in applied(db):
                continue  # another process applied it concurrently
            raise
        ran.append(migration)
    return ran


def pending(db: Database) -> list[Migration]:
    done = applied(db)
    return [m for m in available(db.dialect) if m.version not in done]
