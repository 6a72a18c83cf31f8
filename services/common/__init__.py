"""What every service shares: the message definitions, config and logging."""
