"""Everything outside the exchange that talks to it: client library, CLI, benchmarks."""
