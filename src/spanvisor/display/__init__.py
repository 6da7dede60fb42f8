"""What a task looks like to a person, for every sink that shows one: ``task``
(a task's status, progress, context, steps, cost and summary; the thread's
lines and when they are worth sending), ``readable`` (durations, money,
times, results, log tails and decisions in words)."""
