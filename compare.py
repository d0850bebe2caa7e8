"""Table + validation-curve plot of every finished run: `python compare.py [logs/...]`."""

import argparse
import sys
from pathlib import Path

from zoo.compare import compare

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "folders",
        nargs="*",
        type=Path,
        default=[Path("logs")],
        help="run folders or parents of run folders (default: logs)",
    )
    parser.add_argument(
        "--plot", type=Path, default=None, help="PNG path (default: <first folder>/compare.png)"
    )
    arguments = parser.parse_args()
    sys.exit(compare(arguments.folders, arguments.plot or arguments.folders[0] / "compare.png"))
