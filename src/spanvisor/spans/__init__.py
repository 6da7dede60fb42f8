"""1. Spans in: the one span shape spanvisor reads (``data``), the conventions
it reads them by (``conventions``) and how agent values are made safe
(``sanitize``). Next: :mod:`spanvisor.tracking`."""
