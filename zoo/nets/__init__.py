"""Plain `torch.nn.Module` networks, one file per family; no Lightning anywhere in here.

Every supervised network is built as `Net(input_shape, num_outputs, **options)` and maps a batch
of inputs to a batch of outputs; its class attribute `accepts` names the kinds of input it takes
("image": (C, H, W), "sequence": (steps, features), "vector": (features,), "tokens": (steps,)
int64 ids, "tree": (nodes, 4) int64 rows [token, left, right, level] of binary trees in
post-order, tree.py). Networks that take tokens also take the data's `vocab_size` and
`per_position` (True: one output per position, (batch, steps, num_outputs), as a language model;
False: one per sequence); tree networks take `vocab_size`. Generators and discriminators
(gan.py) are the adversarial task's pair; encoders and decoders (autoencoder.py) the
reconstruction task's.
"""

from zoo.nets.autoencoder import (
    AutoEncoder,
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
)
from zoo.nets.conv import ConvNet
from zoo.nets.feedforward import FeedForward
from zoo.nets.gan import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator
from zoo.nets.gpt import GPT
from zoo.nets.recurrent import RecurrentNet
from zoo.nets.tree import TreeLSTM, TreeRNN
from zoo.nets.vit import ViT

__all__ = [
    "GPT",
    "AutoEncoder",
    "ConvDecoder",
    "ConvDiscriminator",
    "ConvEncoder",
    "ConvGenerator",
    "ConvNet",
    "FeedForward",
    "MLPDecoder",
    "MLPDiscriminator",
    "MLPEncoder",
    "MLPGenerator",
    "RecurrentNet",
    "TreeLSTM",
    "TreeRNN",
    "ViT",
]
