"""`zoo train` from a checkout: `python train.py model=cnn`, `-m model=mlp,cnn`."""

from zoo.cli.train import main

if __name__ == "__main__":
    main()
