"""The architectures: each a LightningModule that is also a plain nn.Module."""

from zoo.models.base import SupervisedModule
from zoo.models.conv import ConvNet
from zoo.models.feedforward import FeedForward
from zoo.models.gan import DCGAN, GAN
from zoo.models.recurrent import RecurrentNet

MLP = FeedForward
CNN = ConvNet

__all__ = [
    "CNN", "DCGAN", "GAN", "MLP", "ConvNet", "FeedForward", "RecurrentNet", "SupervisedModule",
]
