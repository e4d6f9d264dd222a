-- The provider's id of a call that came in over media streams (the callSid), for correlation with the
-- provider's records. An opaque id, never a phone number. NULL for WebRTC calls and replays.

ALTER TABLE calls ADD COLUMN external_id TEXT;
