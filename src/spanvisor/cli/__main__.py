"""``python -m spanvisor.cli``: the same as the ``spanvisor`` command."""

import sys

from spanvisor.cli.entry import main

sys.exit(main())
