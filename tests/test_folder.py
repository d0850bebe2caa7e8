"""data=folder: a user's images in one sub-folder per class, written here with PIL; and
data.augment, the batch augmentation on the training device."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from images import picture, write_folder
from PIL import Image

import zoo
from zoo.data import FolderDataModule
from zoo.data.augment import crop_and_flip
from zoo.data.folder import decode, normalise
from zoo.errors import ConfigError, DoesNotFitError
from zoo.run.training import build, build_run, train


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """3 classes x 12 images: PNG and JPEG, three sizes, a third of them in colour."""
    return write_folder(tmp_path_factory.mktemp("photos"))


def folder_config(make_config, path, *overrides):
    return make_config("data=folder", f"data.path={path}", "data.image_size=12", *overrides)


def test_a_folder_loads_split_resized_and_normalised_with_training_statistics(make_config, photos):
    datamodule = build(folder_config(make_config, photos).data)
    datamodule.setup()
    assert datamodule.classes == ["class_0", "class_1", "class_2"]
    spec = datamodule.spec
    assert (spec.input_shape, spec.num_outputs, spec.kind) == ((3, 12, 12), 3, "classification")
    sizes = {split: len(labels) for split, (_, labels) in datamodule.splits.items()}
    assert sizes == {"train": 24, "val": 5, "test": 7}
    train_images = datamodule.splits["train"][0]
    per_channel = train_images.transpose(0, 1).flatten(1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(3), atol=1e-4, rtol=0)
    # the test split went through the training split's statistics, not its own
    file, label = datamodule.files["test"][0]
    expected = normalise(decode(file, 3, 12)[None], datamodule.mean, datamodule.std)[0]
    torch.testing.assert_close(datamodule.splits["test"][0][0], expected)
    assert datamodule.splits["test"][1][0] == label


def test_grey_images_give_one_channel(make_config, tmp_path):
    datamodule = build(
        folder_config(make_config, write_folder(tmp_path / "grey", colour=False)).data
    )
    datamodule.setup()
    assert datamodule.spec.input_shape == (1, 12, 12)


def test_train_val_test_folders_are_used_when_present(make_config, tmp_path):
    write_folder(tmp_path / "set" / "train", per_class=10)
    write_folder(tmp_path / "set" / "test", per_class=2)
    datamodule = build(folder_config(make_config, tmp_path / "set").data)
    datamodule.setup()
    assert all("/test/" in file for file, _ in datamodule.files["test"])
    assert len(datamodule.files["test"]) == 6
    assert all(
        "/train/" in file for split in ("train", "val") for file, _ in datamodule.files[split]
    )
    assert len(datamodule.files["train"]) + len(datamodule.files["val"]) == 30


def test_large_sets_stream_through_a_dataloader_with_the_same_batches(make_config, photos):
    batches = {}
    for limit in (2048, 0):  # 0 MB: nothing fits in memory, files are decoded per batch
        datamodule = build(folder_config(make_config, photos, f"data.memory_limit_mb={limit}").data)
        datamodule.setup()
        assert datamodule.in_memory == (limit > 0)
        batches[limit] = next(iter(datamodule.val_dataloader()))
    assert isinstance(batches[0], list) and batches[0][0].shape == (5, 3, 12, 12)
    torch.testing.assert_close(tuple(batches[0]), tuple(batches[2048]))


@pytest.mark.slow
def test_a_cnn_trains_on_a_folder_and_predicts_new_images(make_config, tmp_path, photos):
    metrics = train(folder_config(make_config, photos, "model=cnn", "trainer.max_epochs=8"))
    assert metrics["test/acc"] >= 0.85, metrics
    task = zoo.load(next((tmp_path / "checkpoints").glob("best-*.ckpt")))
    data = FolderDataModule(path=str(photos), image_size=12)
    data.setup()
    new = tmp_path / "new"
    new.mkdir()
    images = []
    for label in range(3):
        picture(label, 99, label == 1, (15, 11)).save(new / f"{label}.png")
        images.append(decode(str(new / f"{label}.png"), 3, 12))
    task.eval()
    with torch.no_grad():
        predicted = task(normalise(torch.stack(images), data.mean, data.std)).argmax(1)
    assert predicted.tolist() == [0, 1, 2]


@pytest.mark.parametrize("model", zoo.list_models())
def test_every_architecture_runs_on_a_folder(make_config, photos, model):
    config = folder_config(
        make_config, photos, f"model={model}", "data.batch_size=8", "+trainer.fast_dev_run=true"
    )
    try:
        _, built, _ = build_run(config)
    except DoesNotFitError as error:  # the models that take only tokens, trees or vectors
        pytest.skip(f"{model} does not take images: {error}")
    assert built.input_shape == (3, 12, 12)
    scores = {k: v for k, v in train(config).items() if k.startswith("test/")}
    assert scores and all(np.isfinite(v) for v in scores.values()), scores


def test_an_empty_folder_fails_in_one_line(make_config, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no class sub-folders; put each class"):
        build_run(folder_config(make_config, tmp_path / "empty"))


def test_one_class_fails_in_one_line(make_config, tmp_path):
    write_folder(tmp_path / "one", classes=1)
    with pytest.raises(ConfigError, match="holds only the class 'class_0'"):
        build_run(folder_config(make_config, tmp_path / "one"))


def test_unreadable_files_are_named(make_config, tmp_path):
    root = write_folder(tmp_path / "bad", per_class=4)
    (root / "class_1" / "notes.png").write_text("not an image")
    Image.new("RGB", (4, 4)).save(root / "class_2" / "fine.png")
    (root / "class_2" / "cut.jpg").write_bytes(b"\xff\xd8\xff")  # a JPEG's first bytes only
    with pytest.raises(ConfigError) as raised:
        build_run(folder_config(make_config, root))
    message = str(raised.value)
    assert "\n" not in message and "2 file(s) are not readable" in message
    assert "class_1/notes.png" in message and "class_2/cut.jpg" in message


def test_crop_and_flip_moves_each_image_on_its_own():
    torch.manual_seed(0)
    images = torch.arange(64.0).view(1, 1, 8, 8).repeat(64, 1, 1, 1)
    out = crop_and_flip(images, padding=1)
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images[0, 0], (1, 1, 1, 1))
    windows = {
        (top, left, flip): (w.flip(-1) if flip else w)
        for top in range(3)
        for left in range(3)
        for flip in (False, True)
        for w in [padded[top : top + 8, left : left + 8]]
    }
    found = {
        next(key for key, window in windows.items() if torch.equal(image[0], window))
        for image in out
    }
    assert len(found) > 9  # several offsets and both orientations in one batch
    unflipped = crop_and_flip(images, padding=1, flip=False)
    for image in unflipped:
        assert any(
            torch.equal(image[0], windows[(t, l, False)]) for t in range(3) for l in range(3)
        )


def test_augment_changes_training_batches_only(make_config, photos):
    datamodule = build(folder_config(make_config, photos, "data.augment=true").data)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    for training, changed in ((False, False), (True, True)):
        datamodule.trainer = SimpleNamespace(training=training)
        images, labels = datamodule.on_after_batch_transfer(batch, 0)
        assert torch.equal(labels, batch[1])
        assert (not torch.equal(images, batch[0])) == changed
    assert torch.equal(datamodule.on_after_batch_transfer(batch[0], 0), batch[0])  # a lone input


def test_a_truncated_image_is_named_when_decoded(make_config, tmp_path):
    root = write_folder(tmp_path / "cut", per_class=4)
    whole = (root / "class_0" / "1.png").read_bytes()
    (root / "class_0" / "1.png").write_bytes(whole[: len(whole) // 2])  # its header intact
    with pytest.raises(ConfigError, match=r"1 file\(s\) could not be decoded: class_0/1.png"):
        build_run(folder_config(make_config, root))
