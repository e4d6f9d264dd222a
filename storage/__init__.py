"""Storage: store protocols, the embedded (SQLite + files) and scale-out (PostgreSQL + S3) backends,
envelope keys, retention and the audit log. Storage never decides who may read; `worker.auth.access` does."""
