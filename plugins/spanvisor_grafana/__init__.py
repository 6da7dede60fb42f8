"""spanvisor's built-in grafana sink (placeholder until its issue lands)."""
