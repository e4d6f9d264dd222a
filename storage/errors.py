"""Storage error tree. Messages carry ids and sizes, never transcript text, audio or key material."""


class StorageError(Exception):
    """Base of every storage failure."""


class NotFoundError(StorageError):
    """A call, track or key that does not exist (or was deleted by retention)."""


class StorageUnavailableError(StorageError):
    """The backend cannot be reached now; the caller may spool and retry."""


class KeyError_(StorageError):
    """A wrapped key cannot be unwrapped (unknown KEK id/version, or it failed authentication)."""


class KeyDestroyedError(KeyError_):
    """The track's wrapped key was destroyed (crypto-shredded); its recording cannot be decrypted."""


class KeyFileError(StorageError):
    """The local KEK file is unsafe (group/other permission bits) or unreadable."""


class InvalidIdError(StorageError, ValueError):
    """A call id, track number or org id that is not well-formed (never reaches a path or a query)."""


class ConflictError(StorageError):
    """A write that would change an existing record (a different call, track key or utterance, same id)."""


class SchemaError(StorageError):
    """The database schema is not the version this worker needs (run `converse-worker migrate`)."""


class StoreClosedError(StorageError):
    """The store was closed."""
