"""State stores: where sinks and replicas claim per-task side effects and
share small records. ``api`` is the protocol a store implements (and its
entry-point group), ``local`` the SQLite store ``spanvisor serve`` uses
without PostgreSQL; the PostgreSQL store lives in its plugin."""
