"""A ``type: text`` column in the schema and at ingest: stored as token ids, blank refused,
a round trip through the config keeps the width, old token-id schemas are unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from runtime.config import SchemaConfig
from runtime.intake.sources import Batch
from runtime.intake.validation import Validator
from strategies.text import token_columns, tokenize

SCHEMA = {"features": [{"name": "text", "type": "text", "max_length": 8}, "n"],
          "classes": [0, 1]}


def test_a_text_column_is_stored_as_its_token_ids() -> None:
    s = SchemaConfig.model_validate(SCHEMA)
    assert s.features == [*(f"text[{i:02d}]" for i in range(8)), "n"]
    assert s.inputs == ["text", "n"] and s.text_columns == {"text": s.features[:8]}
    assert not s.typed  # token ids go to the model as they are
    again = SchemaConfig.model_validate(s.model_dump())  # as the retrain child reads it
    assert again.features == s.features and again.inputs == s.inputs


def test_old_token_id_schemas_are_plain_numbers() -> None:
    s = SchemaConfig(features=token_columns(32), classes=[0, 1, 2, 3])
    assert s.inputs == s.features and s.text_columns == {}


def test_max_length_is_for_text_columns_only() -> None:
    with pytest.raises(ValidationError, match="max_length is for type: text only"):
        SchemaConfig.model_validate({"features": [{"name": "a", "max_length": 8}]})
    with pytest.raises(ValidationError, match="max_length"):
        SchemaConfig.model_validate({"features": [{"name": "a", "type": "text",
                                                   "max_length": 10**9}]})


def test_ingest_tokenizes_the_sentence_and_refuses_a_blank_one() -> None:
    v = Validator(SchemaConfig.model_validate(SCHEMA))
    frame = pd.DataFrame({"row_id": ["a", "b", "c"], "text": ["My parcel is late.", "", None],
                          "n": ["1", "2", "3"], "label": ["0", "1", "1"]}, dtype=object)
    clean, reasons, mode, _ = v.validate(Batch(origin="t", frame=frame))
    assert mode == "rows" and list(clean["__id"]) == ["a"]
    assert reasons == {1: "feature 'text' is missing or blank (missing: refuse)",
                       2: "feature 'text' is missing or blank (missing: refuse)"}
    want = tokenize(["My parcel is late."], 8).numpy()[0]
    np.testing.assert_array_equal(clean.iloc[0, :8].to_numpy(dtype=float), want)
    x, bad = v.encode(pd.DataFrame({"text": ["hello"], "n": [1.0]}, dtype=object))
    assert not bad and x.shape == (1, 9) and x[0, 0] == 101


def test_a_missing_text_column_is_named_as_rows_carry_it() -> None:
    v = Validator(SchemaConfig.model_validate(SCHEMA))
    frame = pd.DataFrame({"row_id": ["a"], "n": ["1"], "label": ["0"]}, dtype=object)
    _, reasons, _, _ = v.validate(Batch(origin="t", frame=frame))
    assert reasons == {0: "missing column(s) 'text'"}
