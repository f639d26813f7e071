"""The appeal: a candidate refused only for forgetting, judged on the live rows that follow.

A golden set holds what an earlier champion knew. Under real concept drift part of that
knowledge is no longer true, and a candidate that fits the present must "forget" it; the
holdout and the golden sets cannot tell that from forgetting what still holds, but the
rows that arrive after the candidate was trained can: where the golden knowledge still
holds, live traffic shows it and the champion does better there. So with
``gate.appeal: shadow`` (the default) a candidate that passed every new-data check and
failed only golden ones scores the next ``gate.shadow_rows`` live labelled rows beside the
champion, and is promoted only when, on those rows, it is at least as good as the champion
(the point estimate) and not shown worse; otherwise it is refused as before.

Measured on bench/real_streams.py (issue 16): refusing at once refused 6 of 22 candidates
on Electricity, each for forgetting the weeks before it, and retraining every 1,800 rows
without any gate beat the loop. ``gate.appeal: refuse`` keeps the immediate refusal (for
golden sets that guard knowledge which must hold whether or not traffic shows it).
"""

from __future__ import annotations

from dataclasses import replace

from runtime.promotion.evidence import NEW_DATA, EvalSet, Evidence
from runtime.promotion.gate import Check, GateDecision, evaluate
from runtime.promotion.settings import GateConfig, Rule

APPEAL = "appeal"
"""The ``next`` of a ``gate.failed`` event whose candidate is judged on live rows next."""

LIVE_CHECK = "live"


def appealable(decision: GateDecision, cfg: GateConfig) -> bool:
    """True when the decision failed on golden checks only and every new-data check passed
    (an appeal can only be won on the present, so the present must not be against it)."""
    if cfg.appeal != "shadow" or decision.passed:
        return False
    failed = [c for c in decision.checks if not c.passed]
    new = [c for c in decision.checks if c.name.split("/")[0] == NEW_DATA]
    return bool(new) and all(c.name.startswith("golden:") for c in failed)


def judge_appeal(evidence: Evidence, live: EvalSet, cfg: GateConfig) -> GateDecision:
    """The appeal's verdict on ``live`` (champion = reference, candidate = challenger):
    not shown worse, and at least the champion's score."""
    regression = evidence.task == "regression"
    rule = (Rule(metric="mae", on="new_data", relative=True, max_shown_worsening=0.0)
            if regression else Rule(on="new_data", max_shown_worsening=0.0))
    base = evaluate(replace(evidence, sets={NEW_DATA: live}),
                    cfg.model_copy(update={"rules": [rule]}))
    shown = base.checks[0] if base.checks else None
    champ = shown.champion if shown else None
    cand = shown.candidate if shown else None
    if champ is None or cand is None:
        ok, reason = False, "The live rows could not be scored."
    else:
        ok = cand <= champ if regression else cand >= champ
        word = "MAE" if regression else "accuracy"
        reason = (f"On {len(live)} live labelled rows after it was trained, its {word} "
                  f"{cand:.3f} {'against' if ok else 'fell short of'} the champion's "
                  f"{champ:.3f}{'' if ok else ': the knowledge it forgot still holds'}.")
    point = Check(LIVE_CHECK, "mae" if regression else "accuracy", champ, cand,
                  "candidate at least as good as the champion on live rows", ok, reason,
                  len(live))
    checks = (*base.checks, point)
    failed = tuple(c.reason for c in checks if not c.passed)
    return GateDecision(not failed, checks, failed or (reason,), cfg.alpha, cfg.test)
