"""Golden-agreement neighbours on mixed tables (issue 18): found on the model's own
encoding, not on stored hash codes, and not poisoned by missing values."""

from __future__ import annotations

import numpy as np
from torch import nn

from runtime.promotion.agreement import contradicted
from runtime.promotion.evidence import EvalSet, score
from strategies.tabular import TabularModel, category_code, fit_preprocessing

SPECS = [
    {"name": "city", "type": "categorical", "missing": "impute", "min_count": 5},
    {"name": "spend", "type": "numeric", "missing": "indicator", "min_count": 5},
]


def _table(rng: np.random.Generator, n: int, churny: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """30 cities stored as hash codes; the label is the city's (one concept throughout);
    spend is noise with 5% missing."""
    codes = np.array([category_code(f"city{i}") for i in range(30)])
    city = rng.integers(0, 30, n)
    spend = rng.normal(size=n)
    spend[rng.random(n) < 0.05] = np.nan
    return np.column_stack([codes[city], spend]), churny[city].astype(np.int64)


def _sets() -> tuple[EvalSet, EvalSet]:
    rng = np.random.default_rng(0)
    churny = rng.random(30) < 0.5
    gx, gy = _table(rng, 400, churny)
    nx, ny = _table(rng, 1200, churny)
    prep = fit_preprocessing(gx, SPECS)
    model = TabularModel(prep, nn.Linear(prep.width, 2)).eval()
    return score("v1", model, model, gx, gy, {}), score("new_data", model, model, nx, ny, {})


def test_the_evidence_carries_the_rows_as_the_model_encodes_them() -> None:
    gold, new = _sets()
    assert gold.encoded is not None and new.encoded is not None
    assert gold.encoded.shape[1] > gold.x.shape[1]  # one-hot slots, a missing indicator
    assert not np.isnan(gold.encoded).any()


def test_an_unchanged_concept_over_categories_contradicts_no_golden_row() -> None:
    gold, new = _sets()
    assert contradicted(gold, new).mean() < 0.02


def test_missing_values_in_stored_features_do_not_scramble_the_neighbours() -> None:
    """Without an encoding (a plain model), NaN is imputed, not let into the distances:
    an unchanged concept contradicts nothing, a flipped one nearly everything."""
    rng = np.random.default_rng(1)
    gx, nx = rng.normal(size=(400, 2)), rng.normal(size=(1200, 2))
    gy, ny = (gx[:, 0] > 0).astype(int), (nx[:, 0] > 0).astype(int)
    gx[rng.random(400) < 0.05, 1] = np.nan
    nx[rng.random(1200) < 0.05, 1] = np.nan
    p = np.full((400, 2), 0.5)
    gold = EvalSet("v1", gy, p, p, gx)
    new = EvalSet("new_data", ny, np.full((1200, 2), 0.5), np.full((1200, 2), 0.5), nx)
    assert contradicted(gold, new).mean() < 0.05
    flipped = EvalSet("new_data", 1 - ny, new.champion, new.candidate, nx)
    assert contradicted(gold, flipped).mean() > 0.9


def test_golden_rows_the_new_data_lies_far_from_are_not_contradicted() -> None:
    """New data in another region (another language, say) has no word on the golden rows:
    their nearest new rows' labels, however different, contradict nothing."""
    rng = np.random.default_rng(2)
    gx, nx = rng.normal(size=(300, 2)), rng.normal(size=(600, 2)) + 40.0
    gy, ny = (gx[:, 0] > 0).astype(int), rng.integers(0, 2, 600)
    p = np.full((300, 2), 0.5)
    gold = EvalSet("v1", gy, p, p, gx)
    new = EvalSet("new_data", ny, np.full((600, 2), 0.5), np.full((600, 2), 0.5), nx)
    assert not contradicted(gold, new).any()


def test_the_text_models_evidence_carries_its_sentence_embeddings() -> None:
    from strategies.models import build_model
    from strategies.text import TextConfig
    from strategies.text_tokenizer import SentenceTokenizer

    model = build_model(TextConfig(encoder_layers=1, dropout=0.0), 16, 4, seed=0).eval()
    x = SentenceTokenizer.packaged(16).encode(["my parcel never arrived", "refund me"])
    got = score("v1", model, model, x, np.array([1, 0]), {})
    assert got.encoded is not None and got.encoded.shape == (2, 384)
