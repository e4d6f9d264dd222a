"""The WebRTC edge: SDP offers, the process-wide aioice settings, one peer connection per call, the registry
of calls (`Calls`) and the WHIP (RFC 9725) handlers."""
