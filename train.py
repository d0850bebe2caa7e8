"""`zoo train` from a checkout: `python train.py model=cnn`, `-m model=mlp,cnn`."""

from zoo.cli import run

if __name__ == "__main__":
    run("train")
