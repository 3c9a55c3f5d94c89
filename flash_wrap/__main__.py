"""``python -m flash_wrap`` is the ``flash-wrap`` command (usable under any launcher)."""

import sys

from .cli import main

sys.exit(main())
