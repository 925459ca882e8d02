"""Services: the only write path. Keyword-only functions taking a session and plain data."""
