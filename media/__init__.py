"""Media: frames, Opus, resampling, VAD, ASR, SFrame and fixture sources. No HTTP, storage or users here."""
