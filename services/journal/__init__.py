"""The journal: durable, CRC-checked, sequenced records, and the committed stream."""
