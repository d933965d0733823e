"""``python -m tokrace``: the same as the ``tokrace`` console script."""

from __future__ import annotations

import sys

from tokrace.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
