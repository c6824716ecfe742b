"""``python -m bootstrap.cli``: the ``dacn`` command without the installed script."""

import sys

from bootstrap.cli import main

sys.exit(main())
