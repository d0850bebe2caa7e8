"""`zoo compare` from a checkout: tables and curves of every finished run."""

import sys

from zoo.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
