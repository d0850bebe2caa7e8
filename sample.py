"""`zoo sample` from a checkout: samples from a GAN, a VAE or a language model."""

from zoo.cli import run

if __name__ == "__main__":
    run("sample")
