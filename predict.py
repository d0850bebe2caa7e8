"""`zoo predict` from a checkout: a classifier's predictions as CSV."""

from zoo.cli import run

if __name__ == "__main__":
    run("predict")
