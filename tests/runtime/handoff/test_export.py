"""Exports: every format loads without driftloop and matches PyTorch on the golden rows;
a model that cannot be exported, or a directory that cannot be written, is one line."""

from __future__ import annotations

import json
import os
import textwrap
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from runtime.handoff.export import (
    MANIFEST,
    ExportError,
    current_version,
    export_version,
    publish,
)
from runtime.handoff.settings import ExportConfig
from runtime.store.unit import golden_sets, load_unit
from tests.runtime.handoff.conftest import Make

ALL = ["safetensors", "torchscript", "onnx"]


def _golden(registry, version: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    return golden_sets(registry, [version])[version][0].astype(np.float32)


@pytest.mark.parametrize("model,n", [
    ({"kind": "mlp", "hidden": [8]}, 4),
    ({"kind": "cnn", "shape": [1, 4, 4], "channels": [4], "hidden": 8}, 16),
], ids=["mlp", "cnn"])
def test_every_format_matches_pytorch_and_loads_without_driftloop(
    tmp_path: Path, make_registry: Make, model: dict[str, object], n: int
) -> None:
    cfg, registry = make_registry(model, n_features=n)
    out = tmp_path / "out"
    export = export_version(cfg, registry, "v1", ALL, out)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest == export.manifest
    assert manifest["version"] == "v1" and manifest["input"]["features"] == cfg.schema.features
    assert manifest["output"]["classes"] == [0, 1, 2]
    assert set(manifest["files"]) == {"model.safetensors", "model.torchscript.pt", "model.onnx"}
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["formats"]["onnx"]["opset"] == 17
    for fmt in ALL:
        assert manifest["formats"][fmt]["max_abs_diff"] <= 1e-4
    import hashlib

    for name, rec in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == rec["sha256"]

    x = _golden(registry, "v1")
    with torch.no_grad():
        want = load_unit(registry, cfg, "v1").model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (x, x[:1], x[:7]):  # the batch size is free
        got = session.run(["logits"], {"x": batch})[0]
        np.testing.assert_allclose(got, want[: len(batch)], atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch: TorchScript is deprecated
        scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    np.testing.assert_allclose(scripted(torch.from_numpy(x[:3])).detach().numpy(), want[:3],
                               atol=1e-4)
    state = load_file(out / "model.safetensors")
    assert set(state) == set(load_unit(registry, cfg, "v1").model.state_dict())


def test_text_model_exports_untrimmed(tmp_path: Path, make_registry: Make) -> None:
    from strategies.text import tokenize

    sentences = ["my card was charged twice", "where is my parcel", "I cannot log in", "hi"]

    def rows(_: np.random.Generator, n: int) -> np.ndarray:
        return tokenize([sentences[i % 4] for i in range(n)], 12).numpy().astype(np.float64)

    cfg, registry = make_registry({"kind": "text", "encoder_layers": 1, "dropout": 0.0},
                                  n_features=12, rows=rows)
    export = export_version(cfg, registry, "v1", ["torchscript", "onnx"], tmp_path / "out")
    assert "WordPiece" in export.manifest["input"]["preprocessing"]
    x = tokenize(["a sentence that is somewhat longer than the others"], 12).numpy()
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = load_unit(registry, cfg, "v1").model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(["logits"], {"x": x})[0], want, atol=1e-4)


def test_a_model_a_trace_would_freeze_is_refused_with_the_difference(
    tmp_path: Path, make_registry: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "branchy.py").write_text(textwrap.dedent("""
        import torch

        class Branchy(torch.nn.Module):
            def __init__(self, n_features, n_classes):
                super().__init__()
                self.lin = torch.nn.Linear(n_features, n_classes)

            def forward(self, x):
                if float(x[:, 0].mean()) > 0:  # decided by the data: a trace freezes it
                    return self.lin(x) * 3
                return self.lin(x)

        def build(n_features, n_classes):
            return Branchy(n_features, n_classes)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))

    def rows(g: np.random.Generator, n: int) -> np.ndarray:
        x = g.normal(size=(n, 4))
        x[:, 0] = np.where(np.arange(n) == 0, -5.0, 1.0)  # the first row alone takes the branch
        return x

    cfg, registry = make_registry({"factory": "branchy:build"}, rows=rows)
    out = tmp_path / "out"
    with pytest.raises(ExportError) as info:
        export_version(cfg, registry, "v1", ["torchscript"], out)
    msg = str(info.value)
    assert msg.startswith("torchscript: outputs differ from PyTorch's by ")
    assert "(limit 0.0001): export refused" in msg and "\n" not in msg
    assert not (out / "model.torchscript.pt").exists()
    export_version(cfg, registry, "v1", ["safetensors"], out)  # the weights still export


def test_unwritable_directory_and_unknown_format_are_one_line(
    tmp_path: Path, make_registry: Make
) -> None:
    cfg, registry = make_registry()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ExportError, match=r"^cannot write exports to .*a-file/out: "):
        export_version(cfg, registry, "v1", ["onnx"], blocker / "out")
    with pytest.raises(ExportError, match=r"unknown export format 'pickle'"):
        export_version(cfg, registry, "v1", ["pickle"], tmp_path / "out")
    with pytest.raises(ExportError, match=r"unknown model version 'v9'"):
        export_version(cfg, registry, "v9", ["onnx"], tmp_path / "out")


def test_publish_swaps_current_atomically_and_prunes(tmp_path: Path, make_registry: Make) -> None:
    cfg, registry = make_registry(versions=4)
    root = tmp_path / "exports"
    settings = ExportConfig(dir=root, formats=["onnx", "safetensors"], keep=2)
    for v in ("v1", "v2", "v3"):
        publish(cfg, registry, v, settings)
        assert current_version(root) == v
        assert os.readlink(root / "current") == v  # relative: the tree can move
    assert sorted(p.name for p in root.iterdir()) == ["current", "v2", "v3"]
    again = publish(cfg, registry, "v2", settings)  # a rollback: the export is reused
    assert again.seconds == {} and current_version(root) == "v2"
    publish(cfg, registry, "v4", settings)
    assert sorted(p.name for p in root.iterdir()) == ["current", "v2", "v4"]
    manifest = json.loads((root / "current" / MANIFEST).read_text())
    assert manifest["version"] == "v4" and set(manifest["formats"]) == {"onnx", "safetensors"}


def test_cli_export_and_its_errors(
    tmp_path: Path, make_registry: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from runtime.cli.main import main

    cfg, _ = make_registry(versions=2)
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
    out = tmp_path / "cli-out"
    code = main(["export", "champion", "-c", str(conf), "-f", "onnx", "-f", "torchscript",
                 "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert printed.splitlines()[0].startswith("onnx         model.onnx             max |diff| ")
    assert f"wrote {out / MANIFEST} (v2)" in printed
    assert json.loads((out / MANIFEST).read_text())["version"] == "v2"
    blocker = tmp_path / "file"
    blocker.write_text("")
    for argv, expected in [
        (["export", "v1", "-c", str(conf), "-f", "onnx", "--out", str(blocker / "x")],
         "driftloop export: cannot write exports to "),
        (["export", "v7", "-c", str(conf), "-f", "onnx", "--out", str(out)],
         "driftloop export: unknown model version 'v7'"),
    ]:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(expected) and len(err.strip().splitlines()) == 1, err
