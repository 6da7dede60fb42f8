"""spanvisor's built-in postgres sink (placeholder until its issue lands)."""
