"""Language modelling: a network predicts the next token at every position of a window."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn

from zoo.nets.checks import check_positive
from zoo.tasks.base import Task, each_stage, register


@register
class LanguageModel(Task):
    """Next-token cross-entropy; losses in nats, `val/bpc` and `test/bpc` in bits per character.

    `vocabulary[i]` is the character of id i (plain text, so checkpoints can decode on their
    own). Each validation epoch writes `sample_length` generated characters, from
    `sample_prompt`, to TensorBoard's TEXT tab (`samples`).
    """

    higher_is_better = each_stage(loss=False, bpc=False)
    val_metric = ("val/bpc",)
    test_metric = ("test/bpc",)
    samples = "text"

    def __init__(
        self,
        net: dict[str, Any] | nn.Module,
        input_shape: tuple[int, ...],
        vocabulary: str,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        compile: bool = False,
        sample_prompt: str = "\n",
        sample_length: int = 300,
        sample_temperature: float = 0.8,
    ) -> None:
        super().__init__(input_shape, optimizer, scheduler, compile)
        if not vocabulary:
            raise ValueError("vocabulary must hold at least one character")
        check_positive("sample_length", sample_length)
        self.save_hyperparameters(ignore=["net"] if isinstance(net, nn.Module) else None)
        size = len(vocabulary)
        self.net = self.network(
            net, input_shape=self.input_shape, num_outputs=size, vocab_size=size, per_position=True
        )
        self.vocabulary = vocabulary
        self.lookup = {character: i for i, character in enumerate(vocabulary)}
        self.example_input_array = torch.zeros(2, *self.input_shape, dtype=torch.long)

    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def example_input(self, batch: int = 2, generator: torch.Generator | None = None) -> Tensor:
        """Random token ids."""
        return torch.randint(len(self.vocabulary), (batch, *self.input_shape), generator=generator)

    def forward(self, ids: Tensor) -> Tensor:
        """(batch, time) ids -> (batch, time, vocabulary) next-token logits."""
        return self.net(ids)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits.flatten(0, -2), targets.flatten())

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        ids, targets = batch
        loss = self.loss(self(ids), targets)
        self.log_train_step({"loss": loss}, targets.numel(), prog_bar=("loss",))
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        ids, targets = batch
        getattr(self, f"{stage}_means").add(
            {"loss": self.loss(self(ids), targets)}, targets.numel()
        )

    def _log_evaluation(self, stage: str) -> None:
        means = getattr(self, f"{stage}_means").pop()
        if "loss" in means:
            values = {f"{stage}/loss": means["loss"], f"{stage}/bpc": means["loss"] / math.log(2)}
            self.log_dict(values, prog_bar=True, sync_dist=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")
        if isinstance(self.logger, TensorBoardLogger) and not self.trainer.sanity_checking:
            text = self.generate(
                self.hparams.sample_prompt,
                self.hparams.sample_length,
                self.hparams.sample_temperature,
                seed=0,
            )
            # Markdown: four leading spaces keep the text as it is (code block).
            block = "\n".join("    " + line for line in text.splitlines())
            self.logger.experiment.add_text("samples", block, self.global_step)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def on_fit_start(self) -> None:
        """Log the data's reference points once (e.g. xz's bits per character on the test split)."""
        datamodule = self.trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "reference_bits_per_char"):
            return
        if self.trainer.is_global_zero:
            self.references = datamodule.reference_bits_per_char()
            for logger in self.loggers:
                logger.log_metrics(self.references, step=0)

    def encode(self, text: str) -> Tensor:
        """Text -> ids (characters outside the vocabulary -> 0, the unknown character)."""
        return torch.tensor([self.lookup.get(c, 0) for c in text], dtype=torch.long)

    @torch.no_grad()
    def generate(
        self,
        prompt: str = "\n",
        length: int = 300,
        temperature: float = 0.8,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> str:
        """`length` characters sampled after `prompt` (the prompt itself not included); the
        context is the last `input_shape[0]` characters. The same seed gives the same text.
        Runs eagerly also with `compile=True`: a window that grows by one character per call is
        a new shape for torch.compile each time, so it would compile graphs for a few hundred
        small forward passes."""
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        generator = torch.Generator(device=self.device)
        if seed is not None:
            generator.manual_seed(seed)
        training = self.training
        self.eval()
        ids = self.encode(prompt or "\n").to(self.device)
        window = self.input_shape[0]
        with torch.compiler.set_stance("force_eager"):
            for _ in range(length):
                logits = self(ids[-window:][None])[0, -1].float() / temperature
                if top_k is not None and top_k < len(logits):
                    cutoff = torch.topk(logits, top_k).values[-1]
                    logits = logits.masked_fill(logits < cutoff, float("-inf"))
                choice = torch.multinomial(logits.softmax(-1), 1, generator=generator)
                ids = torch.cat([ids, choice])
        self.train(training)
        return "".join(self.vocabulary[i] for i in ids[-length:].tolist())
