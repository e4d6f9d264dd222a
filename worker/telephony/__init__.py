"""Telephony edges: phone calls over the Media Streams WebSocket protocol."""
