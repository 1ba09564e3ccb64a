"""``python -m timeback_client``: the ``timeback-client`` command."""

import sys

from .tools._cli import main

sys.exit(main())
