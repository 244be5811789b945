"""Backup, restore and disaster-recovery drills of the SQL store (issue 5; docs/operations.md).

Backups are logical, backend-independent snapshots of every state table, compressed with zstd,
encrypted with AES-256-GCM and described by an Ed25519-signed manifest; see DESIGN.md here.
"""
