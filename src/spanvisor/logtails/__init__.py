"""Log tails: the last OpenTelemetry log lines of a task's trace, put on the
``TaskFinished`` of a task that did not complete (``tails``), from records as
producers hand them over (``records``). Best effort: the records take no
inbox room and are never journaled."""
