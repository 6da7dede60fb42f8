"""spanvisor's built-in slack sink (placeholder until its issue lands)."""
