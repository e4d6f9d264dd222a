"""The CLI's own error: a command failed for a reason the user can act on."""

from __future__ import annotations


class CommandError(Exception):
    """A command failed for a reason the user can act on; printed as one line."""
