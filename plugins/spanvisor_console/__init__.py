"""spanvisor's built-in console sink (placeholder until its issue lands)."""
