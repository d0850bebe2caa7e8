"""`zoo predict` from a checkout: a classifier's predictions as CSV."""

import sys

from zoo.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
