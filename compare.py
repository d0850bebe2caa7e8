"""Tables (one per task and metric, best first) and validation-curve panels of every finished
run: `python compare.py [logs/...] [--columns run,lr,best] [--top 10]`."""

import argparse
import sys
from pathlib import Path

from zoo.compare import COLUMNS, compare

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "folders",
        nargs="*",
        type=Path,
        default=[Path(__file__).resolve().parent / "logs"],
        help="run folders or parents of run folders (default: the checkout's logs/, where "
        "train.py writes)",
    )
    parser.add_argument(
        "--plot", type=Path, default=None, help="PNG path (default: <first folder>/compare.png)"
    )
    parser.add_argument(
        "--columns",
        default=",".join(COLUMNS),
        help="table columns, comma-separated: these or any HPARAMS column (lr, model.cell, "
        f"optimizer, ...); default: {','.join(COLUMNS)}",
    )
    parser.add_argument(
        "--top", type=int, default=10, help="curves per panel: the best N runs (default: 10)"
    )
    parser.add_argument(
        "--width", type=int, default=None, help="table width (default: the terminal's)"
    )
    arguments = parser.parse_args()
    sys.exit(
        compare(
            arguments.folders,
            arguments.plot or arguments.folders[0] / "compare.png",
            tuple(arguments.columns.split(",")),
            arguments.top,
            arguments.width,
        )
    )
