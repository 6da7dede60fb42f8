"""The gate: what decides a coding agent's tool call before it runs.

Folders follow a tool call: :mod:`.contracts` (what each CLI sends and
reads back), :mod:`.shell` (a shell command as the simple commands it
runs), :mod:`.policy` (rules, decided per simple command), :mod:`.deadline`
(when the answer must be written), :mod:`.answer` (the one answer) and
:mod:`.notes` (audit notes spooled for after the answer). Standard library,
tree-sitter and :mod:`spanvisor.redaction` only: nothing here may slow or
break the answer (an import-linter contract keeps it so). The command is
:mod:`spanvisor.hook.command`; a person's decision is :mod:`spanvisor.hook.ask`.
"""
