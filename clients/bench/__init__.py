"""`exchange bench …`: benchmarks that print numbers (and JSON for tools)."""
