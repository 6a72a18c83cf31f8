"""The exchange's services: one package each, sharing ``services.common``."""
