"""One SQL TranscriptStore for SQLite and PostgreSQL.

`store` holds the store (`SqlTranscriptStore`, over `storage.checked`), `statements` the SQL and the row
mapping both databases share, and `sqlite` / `postgres` a small dialect each: connection or pool,
placeholders, error mapping, type conversions. Importing this package imports neither database driver;
`postgres` (asyncpg) is imported by `storage.factory` only, and only when PostgreSQL is configured.
"""
