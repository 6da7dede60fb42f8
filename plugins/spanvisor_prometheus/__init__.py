"""spanvisor's built-in prometheus sink (placeholder until its issue lands)."""
