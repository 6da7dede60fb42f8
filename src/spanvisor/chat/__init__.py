"""What every chat channel's sink shares (Slack, Telegram, Teams), free of
any channel's library: ``pacing`` (a channel's limits kept before sending,
the calls that matter most first), ``retry`` (what to do after a failed
call), ``sending`` (the one way a call goes out: paced, then retried as
those say), ``claims`` (one message per task across replicas and restarts,
through the state store), ``routes`` (which task goes where), ``buttons``
(what an Approve button stands for) and ``live`` with ``record`` (the
engine of a live message per task and its story as replies, which
Telegram and Teams run on). A sink brings its own numbers: its methods' or
chats' limits and its error codes."""
