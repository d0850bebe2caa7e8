"""`zoo export` from a checkout: a trained model as ONNX, TorchScript or torch.export."""

from zoo.cli import run

if __name__ == "__main__":
    run("export")
