"""Plain `torch.nn.Module` networks, one file per family; no Lightning anywhere in here.

Every supervised network is built as `Net(input_shape, num_outputs, **options)` and maps a batch
of inputs to a batch of outputs; its class attribute `accepts` names the kinds of input it takes
("image": (C, H, W), "sequence": (steps, features), "vector": (features,)). Generators and
discriminators (gan.py) are the adversarial task's pair.
"""

from zoo.nets.conv import ConvNet
from zoo.nets.feedforward import FeedForward
from zoo.nets.gan import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator
from zoo.nets.recurrent import RecurrentNet
from zoo.nets.vit import ViT

__all__ = [
    "ConvDiscriminator",
    "ConvGenerator",
    "ConvNet",
    "FeedForward",
    "MLPDiscriminator",
    "MLPGenerator",
    "RecurrentNet",
    "ViT",
]
