"""The tokenizer of a text column, as a value the versioned unit saves and checks.

A ``type: text`` column reaches the text model as ``max_length`` token ids (``[CLS] …
[SEP]`` then ``[PAD]`` = 0). The vocabulary is the encoder's: the pretrained embedding
table has one row per WordPiece token of all-MiniLM-L6-v2, so a vocabulary learned from
the deployment's rows would index rows the encoder never trained. What a
:class:`SentenceTokenizer` fixes is the vocabulary and the normalisation (lowercasing,
accents, punctuation split: the ``tokenizers`` library's JSON form of the packaged
``tokenizer.json``) and the length. The JSON is what is saved with every version, with
its sha256, so a version tokenizes its rows the same way on any machine and a version
whose tokenizer is not the one ingest uses is refused on load instead of scoring ids
that mean other words. It is read with ``Tokenizer.from_str``: JSON, never a pickle.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from strategies.text import PAD_ID, model_dir

FORMAT = 1


@dataclass(frozen=True)
class SentenceTokenizer:
    """The ``tokenizers`` JSON ``spec`` (without truncation or padding) and the row width.

    Examples
    --------
    >>> tok = SentenceTokenizer.packaged(8)
    >>> tok.encode(["My parcel is late."])[0, :3].tolist(), tok.lowercase
    ([101.0, 2026.0, 20463.0], True)
    """

    spec: str
    max_length: int

    @classmethod
    def packaged(cls, max_length: int) -> SentenceTokenizer:
        """The packaged encoder's tokenizer, keeping ``max_length`` tokens."""
        return cls(_packaged_spec(), max_length)

    @classmethod
    def from_bytes(cls, data: bytes, max_length: int) -> SentenceTokenizer:
        return cls(data.decode("utf-8"), max_length)

    @property
    def sha256(self) -> str:
        """The spec's sha256 (what a version records and is checked against)."""
        return _sha(self.spec)

    @property
    def lowercase(self) -> bool:
        return bool((_settings(self.spec).get("normalizer") or {}).get("lowercase", False))

    @property
    def vocab_size(self) -> int:
        return int(_settings(self.spec)["vocab_size"])

    def describe(self) -> dict[str, Any]:
        """The JSON a version's meta keeps of it (the spec itself is saved beside)."""
        return {"format": FORMAT, "max_length": self.max_length, "lowercase": self.lowercase,
                "vocab_size": self.vocab_size, "sha256": self.sha256}

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """Token-id rows ``[len(texts), max_length]``: truncated, padded with 0."""
        if self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 ([CLS] and [SEP]), "
                             f"got {self.max_length}")
        encoded = _engine(self.spec, self.max_length).encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.float64)
        return ids.reshape(len(texts), self.max_length)


def for_columns(text_columns: Mapping[str, Sequence[str]]) -> dict[str, SentenceTokenizer]:
    """The packaged tokenizer of each text column, by its stored token-id features."""
    return {name: SentenceTokenizer.packaged(len(tokens)) for name, tokens in text_columns.items()}


@functools.lru_cache(maxsize=1)
def _packaged_spec() -> str:
    data = json.loads((model_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    data["truncation"] = None  # set per column by _engine
    data["padding"] = None
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


@functools.lru_cache(maxsize=8)
def _sha(spec: str) -> str:
    return hashlib.sha256(spec.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=8)
def _settings(spec: str) -> dict[str, Any]:
    data = json.loads(spec)
    return {"normalizer": data.get("normalizer"), "vocab_size": len(data["model"]["vocab"])}


@functools.lru_cache(maxsize=8)
def _engine(spec: str, max_length: int) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(spec)
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(length=max_length, pad_id=PAD_ID, pad_token="[PAD]")
    return tok
