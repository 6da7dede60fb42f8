"""The peers ``bench_peers.py`` measures beside spanvisor: their environments
(``envs``), their servers and how their persisted rows are counted
(``servers``), and the CPU of a server's process tree (``cpu``)."""
