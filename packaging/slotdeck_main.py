"""The frozen app's entry point: the same `slotdeck` command line as the installed package."""

import sys

from embedded_service.cli import main

if __name__ == "__main__":
    sys.exit(main())
