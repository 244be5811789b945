"""Encryption at rest: envelope encryption of stored bodies, key-encryption-key managers and
keyed blind indexes for searchable values that identify a patient (docs/encryption.md).

Pure cryptography and key custody only: nothing here knows a database. The SQL store keeps the
wrapped data keys (``store/sql/crypto.py``) and the composition root (``app.py``) builds the
``Encryption`` it is given from the settings.
"""
