"""``spanvisor run``: a long-running supervisor of one coding-agent CLI's
session as a task. It starts the CLI with its telemetry aimed at spanvisor
(:mod:`.start`, nothing heavy imported before the CLI runs), answers its
hooks in its warm process (:mod:`.gate`, :mod:`.gate_http`, and the gate it
gives CLIs that have no hook settings, :mod:`.gate_setup`), sends the
task's records (:mod:`.records`) and what streamed CLIs print
(:mod:`.stream`), stops the CLI when the task is cancelled and adopts what
it leaves behind (:mod:`.stop`, :mod:`.procs`), and reads how its run
ended (:mod:`.results`). :mod:`.session` ties them
together."""
