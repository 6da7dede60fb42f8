"""The ``spanvisor`` command: ``main`` (the parser and subcommand
registration), ``demo``, ``emit`` and ``deadletter``; ``serve`` lives with the
receiver, and plugins add theirs through ``spanvisor.commands``."""
