"""Database layer: schema, engine and sessions, claim queries, migrations."""
