"""Where a gate rule is judged: its scopes, one per set, class or slice it names.

A rule ``on`` new data, golden sets or all of them, ``by`` overall, class or slice, becomes
one scope per set (and per class or slice of it), each with the rows it judges and the
fewest rows that may decide. A scope that cannot be judged (a golden set expected but not
evaluated, a class the model lacks, an undefined slice, nothing to judge at all) carries
its problem instead of rows, so its check fails closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.promotion.agreement import contradicted
from runtime.promotion.evidence import NEW_DATA, EvalSet, Evidence
from runtime.promotion.settings import Bound, GateConfig, Rule

GOLDEN_PREFIX = "golden:"


@dataclass(frozen=True)
class Scope:
    """The rows one check judges (None when it cannot be judged, ``problem`` says why)."""

    name: str
    label: str
    rows: EvalSet | None
    minimum: int
    problem: str | None = None
    obsolete: str | None = None
    """Set when the new data contradicts so much of a golden set that it is not judged."""


def set_label(name: str) -> str:
    """A set's name as a reason says it."""
    return "the new-data holdout" if name == NEW_DATA else f"golden set {name!r}"


def _set_names(rule: Rule, evidence: Evidence, expected: Sequence[str]) -> list[str]:
    out = []
    if rule.on in ("new_data", "all"):
        out.append(NEW_DATA)
    if rule.on in ("golden", "all"):
        out.extend(sorted((set(evidence.sets) - {NEW_DATA}) | set(expected)))
    return out


def _slice_mask(evidence: Evidence, rows: EvalSet, where: dict[str, Bound]) -> Any:
    mask = np.ones(len(rows), dtype=bool)
    for feature, (lo, hi) in where.items():
        col = rows.x[:, evidence.features.index(feature)]
        if lo is not None:
            mask &= col >= lo
        if hi is not None:
            mask &= col < hi
    return mask


def scopes(rule: Rule, evidence: Evidence, expected: Sequence[str], cfg: GateConfig) -> list[Scope]:
    """The scopes of ``rule``: sets in name order, each split as ``rule.by`` says."""
    out: list[Scope] = []
    for set_name in _set_names(rule, evidence, expected):
        name = set_name if set_name == NEW_DATA else GOLDEN_PREFIX + set_name
        label = set_label(set_name)
        rows = evidence.sets.get(set_name)
        minimum = cfg.min_holdout if set_name == NEW_DATA else cfg.min_golden
        if rows is None:
            out.append(Scope(name, label, None, minimum, f"{label} was expected but not evaluated"))
            continue
        if set_name != NEW_DATA:
            rows, obsolete = _still_true(rows, evidence, label, minimum, cfg)
            if obsolete is not None:
                out.append(Scope(name, label, rows, minimum, obsolete=obsolete))
                continue
        if rule.by == "overall":
            found = [Scope(name, label, rows, minimum)]
        elif rule.by == "class":
            found = _class_scopes(rule, evidence, rows, name, label, cfg)
        else:
            found = _slice_scopes(rule, evidence, rows, name, label, cfg)
        if not found:  # a rule with nothing to judge must not pass unseen
            what = (
                "no slices are defined (gate.slices)"
                if rule.by == "slice" and not cfg.slices
                else f"{label} has no rows of any {rule.by} the rule names"
            )
            found = [Scope(f"{name}/{rule.by}", label, None, 0, what)]
        out.extend(found)
    return out


def _still_true(
    rows: EvalSet, evidence: Evidence, label: str, minimum: int, cfg: GateConfig
) -> tuple[EvalSet, str | None]:
    """The golden rows the new data does not contradict, and why the set is obsolete when
    too few are left (None: it is judged on the rows kept)."""
    new = evidence.sets.get(NEW_DATA)
    if cfg.obsolete_golden != "exclude" or new is None or evidence.task != "classification":
        return rows, None
    gone = contradicted(rows, new)
    if not gone.any():
        return rows, None
    kept = rows.subset(~gone)
    if len(kept) < minimum <= len(rows):
        return kept, (
            f"{label} is obsolete: the new data contradicts the labels of {int(gone.sum())} "
            f"of its {len(rows)} rows, leaving {len(kept)} (fewer than {minimum}), so it is "
            "not judged"
        )
    return kept, None


def _class_scopes(
    rule: Rule, evidence: Evidence, rows: EvalSet, name: str, label: str, cfg: GateConfig
) -> list[Scope]:
    """One scope per class the rule names (every class when it names none)."""
    out: list[Scope] = []
    known = [str(c) for c in evidence.classes]
    for c in [c for c in rule.only or () if c not in known]:
        what = f"class {c} is not one of the model's classes ({', '.join(known)})"
        out.append(Scope(f"{name}/class={c}", f"class {c} of {label}", None, 0, what))
    for pos, cls in enumerate(evidence.classes):
        if rule.only is not None and str(cls) not in rule.only:
            continue
        sub = rows.subset(np.asarray(rows.y) == pos)
        if len(sub):  # a class absent from a set is not evidence either way
            out.append(
                Scope(f"{name}/class={cls}", f"class {cls} of {label}", sub, cfg.min_subset_rows)
            )
    return out


def _slice_scopes(
    rule: Rule, evidence: Evidence, rows: EvalSet, name: str, label: str, cfg: GateConfig
) -> list[Scope]:
    """One scope per slice the rule names (every slice of ``gate.slices`` when it names none)."""
    out: list[Scope] = []
    for sl in rule.only if rule.only is not None else sorted(cfg.slices):
        where = cfg.slices.get(sl)
        unknown = sorted(set(where or {}) - set(evidence.features))
        scope_name, scope_label = f"{name}/slice={sl}", f"slice {sl!r} of {label}"
        if where is None or unknown:
            what = (
                f"slice {sl!r} is not defined"
                if where is None
                else (f"slice {sl!r} names unknown feature(s) {', '.join(unknown)}")
            )
            out.append(Scope(scope_name, scope_label, None, 0, what))
            continue
        sub = rows.subset(_slice_mask(evidence, rows, where))
        if len(sub):
            out.append(Scope(scope_name, scope_label, sub, cfg.min_subset_rows))
    return out
