"""`zoo export` from a checkout: a trained model as ONNX, TorchScript or torch.export."""

import sys

from zoo.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
