"""`zoo sample` from a checkout: samples from a GAN, a VAE or a language model."""

import sys

from zoo.cli.sample import main

if __name__ == "__main__":
    sys.exit(main())
