"""`zoo compare` from a checkout: tables and curves of every finished run."""

from zoo.cli import run

if __name__ == "__main__":
    run("compare")
