"""`exchange mm`: the market maker (``quotes`` is the pure quoting logic, ``bot`` the loop)."""
