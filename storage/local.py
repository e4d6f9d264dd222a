"""The embedded backend: `LocalTranscriptStore` (SQLite) and `LocalRecordingStore` (one file per track)."""

from storage.file_recordings import LocalRecordingSink, LocalRecordingStore
from storage.sql.sqlite import LocalTranscriptStore

__all__ = ["LocalRecordingSink", "LocalRecordingStore", "LocalTranscriptStore"]
