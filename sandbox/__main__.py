"""``python -m sandbox`` - run the Personio stand-in in the foreground."""

from __future__ import annotations

import sys

from sandbox.cli import main

if __name__ == "__main__":
    sys.exit(main())
