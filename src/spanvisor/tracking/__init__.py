"""2. Spans grouped into tasks, and the domain events they cause: the
``tracker`` finds each span's task; per task, a ``record`` holds its state as
data and ``taskstate`` routes each span to the concerns that read it
(``statefacts``, ``calls``, ``taskbudget``, ``approvals``, ``artifacts``,
``results``, ``stalls``), which take the record and return events and import
nothing back. Pure code: no I/O, no threads. Next: :mod:`spanvisor.pipeline`."""
