"""``python -m flash_wrap`` is the ``flash-wrap`` command (usable under any launcher)."""

import sys

from .apps.cli import main

sys.exit(main())
