"""Security layer: who is asking (actor, accounts, tokens), what they may do (scopes, authz) and
the proof afterwards of what they did (the hash-chained audit trail)."""
