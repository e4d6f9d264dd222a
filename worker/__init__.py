"""Worker: configuration, CLI, HTTP app, call sessions, access control and wiring.

No media or redaction logic lives here."""
