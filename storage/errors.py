"""Storage error tree. Messages carry ids and sizes, never transcript text, audio or key material."""


class StorageError(Exception):
    """Base of every storage failure."""


class NotFoundError(StorageError):
    """A call, track or key that does not exist (or was deleted by retention)."""


class StorageUnavailableError(StorageError):
    """The backend cannot be reached now; the caller may spool and retry."""


class KeyError_(StorageError):
    """A wrapped key cannot be unwrapped (unknown KEK id/version, or it failed authentication)."""
