"""Market data: public books, L2/trade/BBO feeds and snapshots."""
