"""The gateway: sessions, validation and routing between clients and the matcher."""
