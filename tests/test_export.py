"""export.py: ONNX (checked with onnxruntime), TorchScript and torch.export files of trained
checkpoints, with a dynamic batch dimension, matching PyTorch's outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from test_models import build, quiet_trainer

import zoo
from zoo.cli import export as export_cli
from zoo.cli.export import example_input, export, max_difference, run_exported


def checkpoint(name: str, inputs: str, folder: Path) -> Path:
    """A checkpoint of model `name` on `inputs` with random (not freshly initialised) weights."""
    model = build(name, inputs)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    trainer = quiet_trainer(max_epochs=0)
    trainer.strategy.connect(model)
    path = folder / f"{name}.ckpt"
    trainer.save_checkpoint(path)
    return path


# A classifier's logits, a language model's logits for a token window, a GAN's generator.
@pytest.mark.parametrize(
    ("name", "inputs"), [("cnn", "image"), ("vit", "image"), ("gpt", "tokens"), ("gan", "image")]
)
def test_onnx_matches_pytorch_at_another_batch_size(name, inputs, tmp_path):
    model = zoo.load(checkpoint(name, inputs, tmp_path)).eval()
    path = export(model, "onnx", tmp_path / "model.onnx")
    graph = onnx.load(str(path)).graph
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch" and not batch_dim.dim_value  # dynamic, named
    x = example_input(model, batch=5)
    actual = run_exported(path, "onnx", x)
    with torch.no_grad():
        expected = model(x).numpy()
    difference = np.abs(actual - expected).max()
    print(f"{name}: onnxruntime vs PyTorch max abs difference {difference:.3g}")
    assert actual.shape == expected.shape and actual.shape[0] == 5
    assert difference < 1e-4


@pytest.mark.parametrize("format", ["torchscript", "exported"])
def test_torchscript_and_torch_export_match_pytorch(format, tmp_path):
    model = zoo.load(checkpoint("cnn", "image", tmp_path))
    path = export(model, format, tmp_path / f"model{export_cli.FORMATS[format]}")
    assert max_difference(model, path, format, batch=7) < 1e-5


def test_export_cli_writes_the_file_and_prints_the_difference(tmp_path, capsys):
    ckpt = checkpoint("mlp", "image", tmp_path)
    out = tmp_path / "out" / "mlp.onnx"
    assert export_cli.main([f"ckpt_path={ckpt}", "format=onnx", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "max abs difference vs PyTorch" in printed
    assert float(printed.rsplit(":", 1)[1]) < 1e-4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "usage: python export.py"),
        (["ckpt_path=missing.ckpt"], "error: no checkpoint at"),
        (["ckpt_path=" + __file__], "error: cannot read checkpoint"),
        (["ckpt_path=x.ckpt", "format=tflite"], "error: format must be one of onnx"),
        (["ckpt_path=x.ckpt", "size=3"], "error: export takes no option 'size'"),
    ],
)
def test_export_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    assert export_cli.main([*args, f"out={tmp_path}/model.onnx"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "model.onnx").exists()


def test_exported_format_needs_a_pt2_file(tmp_path, capsys):
    ckpt = checkpoint("mlp", "image", tmp_path)
    assert export_cli.main([f"ckpt_path={ckpt}", "format=exported", f"out={tmp_path}/m.pt"]) == 2
    assert "writes a .pt2 file" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_a_network_torch_export_cannot_trace_is_one_line(tmp_path, capsys):
    ckpt = checkpoint("treelstm", "tree", tmp_path)  # data-dependent control flow over trees
    assert export_cli.main([f"ckpt_path={ckpt}", "format=onnx", f"out={tmp_path}/t.onnx"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: could not export TreeLSTM as onnx: ")
    assert error.count("\n") == 1 and "\x1b" not in error
