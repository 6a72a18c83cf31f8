"""Liveness of every service, and the one place that decides which matcher is primary."""
