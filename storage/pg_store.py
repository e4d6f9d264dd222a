"""Temporary: the names `storage/audit_pg.py` still imports from here. Their home is now
`storage.sql.postgres` (`UNAVAILABLE_ERRORS`, `PgPool`, ...); this module goes once audit_pg imports that."""

from storage.sql.postgres import ACQUIRE_TIMEOUT_S, COMMAND_TIMEOUT_S, describe_url
from storage.sql.postgres import UNAVAILABLE_ERRORS as _UNAVAILABLE

__all__ = ["ACQUIRE_TIMEOUT_S", "COMMAND_TIMEOUT_S", "_UNAVAILABLE", "describe_url"]
