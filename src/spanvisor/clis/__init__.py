"""The coding-agent CLIs spanvisor supervises: one adapter each
(:mod:`.adapter`), found by name through :mod:`.registry`. Nothing
outside this package names a CLI; a third party adds one through the
``spanvisor.clis`` entry-point group (docs/reference/adding-a-cli.md)."""
