"""The content-addressed store, and what identifies a result in it: code digests and provenance."""
