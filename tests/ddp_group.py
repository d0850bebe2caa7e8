"""One process of a 2-process CPU DDP group that trains several model yamls in turn.

`python tests/ddp_group.py OUT MODEL...` with RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT
set (tests/test_ddp.py starts both processes): the process group starts once and every model
trains a few batches through zoo.run.training.train, so process start-up is paid once, not per
model.
Each run checks that the replicas end with identical parameters and writes OUT/<model>.json.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parent.parent

# The data each kind of input trains on here, kept tiny: DDP start-up and a few steps only.
DATA_FOR_INPUT = {
    "image": ["data=digits"],
    "tokens": ["data=text", "data.max_chars=60000", "data.steps_per_epoch=4", "data.block_size=32"],
    "tree": [
        "data=listops",
        "data.distribution=easy",
        "data.num_train=256",
        "data.num_val=64",
        "data.num_test=64",
    ],
}
TINY_RUN = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
    "trainer.benchmark=false",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "+callbacks.replicas._target_=ddp_group.ReplicasAgree",
]


class ReplicasAgree(Callback):
    """After fit, every rank's parameters must be the same (gradients were reduced), and so must
    a GAN's FID classifier (one for all). Other buffers may differ: batch-norm statistics of the
    last step are local until the next forward."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tensors = list(pl_module.parameters())
        for metric in getattr(pl_module, "scores", {}).values():  # a GAN's FID classifier
            tensors += list(metric.inception.state_dict().values())
        flat = torch.cat([t.detach().double().flatten() for t in tensors])
        checksum = torch.stack([flat.sum(), (flat * torch.arange(len(flat)).sin()).sum()])
        gathered = trainer.strategy.all_gather(checksum)
        if not torch.allclose(gathered[0], gathered[1], rtol=1e-9, atol=1e-9):
            raise AssertionError(f"replicas differ after DDP training: {gathered.tolist()}")


class PoisonInput(Callback):
    """A NaN batch in process 1 only, on its second and last step: only the guard's reduction
    over processes can make process 0, whose losses stay finite, stop too."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_rank == 1 and batch_idx == 1:
            batch[0].fill_(float("nan"))


POISONED = "nan-in-one-process"  # not a model: mlp with PoisonInput; both processes must stop
# Not models: a run killed mid-epoch and resumed, mlp (dropout, augmentation) and gan (each
# process's own noise generator); the model after the prefix.
RESUMED = "resumed-exactly-"
CLOCK = "timed-last-checkpoint"  # not a model: mlp with a last.ckpt every 1e-9 s of training


class RecordSaves(Callback):
    """The global step of every checkpoint this process takes part in writing."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict) -> None:
        self.steps.append(trainer.global_step)
        if trainer.global_rank == 0:
            (Path(trainer.default_root_dir) / "saves.json").write_text(json.dumps(self.steps))


def resumed_exactly(out: Path, model: str) -> dict:
    """A 2-epoch run of `model`, and the same run killed after batch 9 (its checkpoints as the
    kill left them) and resumed with ckpt_path=last: the same metrics and weights, to the bit,
    in every process."""
    import shutil

    import torch.distributed as dist

    from tests.conftest import compose_config
    from zoo.run.training import train

    folder = out / f"{RESUMED}{model}"
    model, _, loader = model.partition("-")  # mlp-dataloader: through a torch DataLoader
    step = 9 * (2 if model == "gan" else 1)  # a GAN steps two optimizers per batch
    gan = ["model.fid_classifier_epochs=1", f"model.fid_cache_dir={out / 'fid'}"]
    run = [
        f"model={model}",
        *DATA_FOR_INPUT["image"],
        *(gan if model == "gan" else ["data.augment=true"]),
        *[o for o in TINY_RUN if "limit_train" not in o and "max_epochs" not in o],
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=6",
        "trainer.deterministic=true",
        f"callbacks.last_checkpoint.every_n_train_steps={step}",
        *([f"data.loader={loader}"] if loader else []),
    ]
    keep = [
        "+callbacks.keep._target_=test_resume.KeepCheckpointsAt",
        f"+callbacks.keep.step={step}",
        f"+callbacks.keep.to={folder}-killed",
    ]
    twin = train(compose_config(folder, [*run, *keep]))
    final = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    dist.barrier()
    if dist.get_rank() == 0:
        shutil.rmtree(folder / "checkpoints")
        shutil.copytree(f"{folder}-killed", folder / "checkpoints")
    dist.barrier()
    torch.manual_seed(1000 + dist.get_rank())  # other random states before the resume
    resumed = train(compose_config(folder, [*run, "ckpt_path=last"]))
    after = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    differ = [k for k in final if not torch.equal(final[k], after[k])]
    return {"twin": twin, "resumed": resumed, "weights_differ": differ}


def data_for(model: str) -> list[str]:
    """The overrides of the tiny data `model` trains on here: images if it takes them."""
    from zoo.registry import accepted_inputs, model_config

    accepts = accepted_inputs(model_config(model)) or ("image",)
    return next(DATA_FOR_INPUT[kind] for kind in ("image", "tokens", "tree") if kind in accepts)


def overrides_for(model: str, out: Path) -> list[str]:
    """The train.py overrides of a tiny DDP run of `model` on data it takes."""
    from zoo.registry import model_config

    if model == CLOCK:  # 3 shared clock readings (every 20 steps); the first decides at step 40
        clock = [
            "+callbacks.saves._target_=ddp_group.RecordSaves",
            "callbacks.last_checkpoint.every_n_seconds=1e-9",
            "data.batch_size=8",
        ]
        tiny = [o.replace("limit_train_batches=3", "limit_train_batches=60") for o in TINY_RUN]
        return ["model=mlp", *DATA_FOR_INPUT["image"], *tiny, *clock]
    if model == POISONED:
        poisoned = [
            "+callbacks.poison._target_=ddp_group.PoisonInput",
            "trainer.log_every_n_steps=50",
        ]
        tiny = [o.replace("limit_train_batches=3", "limit_train_batches=2") for o in TINY_RUN]
        return ["model=mlp", *DATA_FOR_INPUT["image"], *tiny, *poisoned]

    data = data_for(model)
    extra = ["model.fid_classifier_epochs=1"] if "fid_cache_dir" in model_config(model) else []
    extra += [f"model.fid_cache_dir={out / 'fid'}"] if extra else []
    return [f"model={model}", *data, *TINY_RUN, *extra]


def main(out: Path, models: list[str]) -> None:
    from tests.conftest import compose_config
    from zoo.run.callbacks import NonFiniteLossError
    from zoo.run.training import train

    torch.set_num_threads(1)
    rank = int(__import__("os").environ["RANK"])
    for model in models:
        try:
            if model.startswith(RESUMED):
                metrics = resumed_exactly(out, model.removeprefix(RESUMED))
            else:
                config = compose_config(out / model, overrides_for(model, out))
                config.paths.log_dir = str(out / "logs")
                metrics = train(config)
        except NonFiniteLossError as error:
            metrics = {"stopped": str(error)}
        except BaseException:  # noqa: BLE001 - recorded, then this process ends
            (out / f"{model}.rank{rank}.error").write_text(traceback.format_exc())
            sys.stderr.write(traceback.format_exc())
            sys.stderr.flush()
            __import__("os")._exit(1)  # the other rank's collectives fail instead of waiting
        metrics["pid"] = __import__("os").getpid()
        (out / f"{model}.rank{rank}.json").write_text(json.dumps(metrics))


if __name__ == "__main__":
    sys.path[:0] = [str(REPO), str(Path(__file__).parent)]
    main(Path(sys.argv[1]), sys.argv[2:])
