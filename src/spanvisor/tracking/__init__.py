"""2. Spans grouped into tasks, and the domain events they cause: the
``tracker`` finds each span's task, a ``taskstate`` per task turns spans into
events in time order (with ``identity``, ``taskcontext``/``occupancy`` and
``outcome``). Pure code: no I/O, no threads. Next: :mod:`spanvisor.pipeline`."""
