"""The SQL store: one schema shape and one query compiler for SQLite and PostgreSQL."""
