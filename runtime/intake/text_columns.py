"""Text columns into their stored form: a sentence becomes ``max_length`` token ids.

A ``type: text`` column (see :class:`runtime.intake.settings.SchemaConfig`) arrives as a
sentence and is stored as the token-id features ``name[00]`` … that the text model reads.
The tokenizer is the packaged encoder's with the column's length
(:class:`strategies.text_tokenizer.SentenceTokenizer`); every version saves it and is
checked against it on load (:mod:`runtime.store.unit`), so the ids stored by ingest,
those a version trained on and those ``/v1/predict`` scores are one encoding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from runtime.intake.settings import SchemaConfig
from strategies.text_tokenizer import SentenceTokenizer, for_columns


def tokenizers(schema: SchemaConfig) -> dict[str, SentenceTokenizer]:
    """Each text column's tokenizer (empty without text columns)."""
    return for_columns(schema.text_columns)


def tokenize_frame(
    frame: pd.DataFrame, schema: SchemaConfig, reasons: dict[int, str]
) -> pd.DataFrame:
    """``frame`` with each text column present replaced by its token-id columns (NaN
    for a blank sentence, refused with its reason when its missing rule is ``refuse``;
    ``impute``/``indicator``: the empty sentence). Rows by position."""
    texts = {n: t for n, t in schema.text_columns.items() if n in frame.columns}
    if not texts:
        return frame
    frame = frame.reset_index(drop=True)
    out = frame.drop(columns=list(texts))
    for name, tokens in texts.items():
        raw = frame[name]
        blank = (raw.isna() | (raw.astype(str).str.strip() == "")).to_numpy()
        rule = schema.missing_rule(name)
        sentences = ["" if b else str(v) for v, b in zip(raw.tolist(), blank, strict=True)]
        ids = tokenizers(schema)[name].encode(sentences)
        if rule == "refuse":
            ids[blank] = np.nan
            for i in np.flatnonzero(blank):
                reasons.setdefault(int(i), f"feature '{name}' is missing or blank "
                                   "(missing: refuse)")
        out = pd.concat([out, pd.DataFrame(ids, columns=tokens)], axis=1)
    return out

