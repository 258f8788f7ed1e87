"""``python -m hft.cli``: the ``hft`` command."""

import sys

from hft.cli import main

sys.exit(main())
