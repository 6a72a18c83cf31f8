"""The statements writer: per-account end-of-day statements from the journal."""
