"""The review page's estimated accuracy: what the champion's calibrated confidence
expects, beside what the labels realized.

One chart of the label-free estimate (CBPE, :mod:`runtime.store.estimated`) over the
stream, on the same rows as the realized chart above it, with a mark on every span where
the realized accuracy left the estimate's band -- the sign of concept drift (the estimate
sees a covariate shift, not a change of the label's relation to the input). A span's band
is ``z * sqrt(v (1 - v) / n)`` over its ``n`` labelled rows (an upper bound of the
Bernoulli spread) widened by the champion's calibration error. One line says the current
estimate (accuracy with its band, and the expected macro-F1), and how it compares on the
champion's latest labelled rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from runtime.review.charts import Mark, line_chart
from runtime.review.page_html import esc, num
from runtime.store.estimated import BAND_Z
from runtime.store.served import Point

__all__ = ["diverged_spans", "estimated_section"]


def diverged_spans(
    estimate: Sequence[Point], realized: Sequence[Point], error: float, z: float = BAND_Z
) -> list[tuple[Point, Point]]:
    """The ``(estimate, realized)`` points of the spans (same version, overlapping rows)
    where the realized value lies outside the estimate's band."""
    out = []
    for r in realized:
        e = next((e for e in estimate if e.version == r.version
                  and e.first_row <= r.last_row and r.first_row <= e.last_row), None)
        if e is None or r.rows < 1:
            continue
        half = z * math.sqrt(max(e.value * (1 - e.value), 0.0) / r.rows) + error
        if abs(r.value - e.value) > half:
            out.append((e, r))
    return out


def _current(est: Mapping[str, Any] | None) -> str:
    if not est or est.get("value") is None:
        return ""
    f1 = "" if est.get("macro_f1") is None else f", macro-F1 {num(est['macro_f1'])}"
    line = (f"<b>{esc(est['version'])}</b>: estimated {num(est['value'])} "
            f"[{num(est['low'])}, {num(est['high'])}]{f1} on its last {num(est['rows'])} rows")
    vs = est.get("versus_realized")
    if vs:
        real = vs["realized"]
        verdict = ('<strong>DIVERGES: the sign of concept drift</strong>' if vs["diverged"]
                   else "agrees")
        line += (f"; realized {num(real['value'])} on the same {num(real['rows'])} labelled "
                 f"rows: {verdict}")
    return f'<p class="estimated">{line}</p>'


def _mae_line(mae: Mapping[str, Any]) -> str:
    """A regression champion's expected MAE from its loss model, beside the realized."""
    if mae.get("value") is None:
        return ('<p class="note">No row has been monitored by a champion with a loss model '
                "yet: the expected MAE appears once rows are scored.</p>")
    line = (f"<b>{esc(mae['version'])}</b>: expected MAE {num(mae['value'])} on its last "
            f"{num(mae['rows'])} rows (its loss model, no labels needed)")
    vs = mae.get("versus_realized")
    if vs:
        line += (f"; {num(vs['estimated'])} expected on the {num(vs['rows'])} labelled rows "
                 f"where the realized MAE is {num(vs['realized']['value'])}")
    return f'<p class="estimated">{line}</p>'


def estimated_section(
    estimate: Sequence[Point], realized: Sequence[Point], est: Mapping[str, Any] | None,
    mae: Mapping[str, Any] | None = None,
) -> str:
    """The chart of the estimate with its divergence marks, and the current line (a
    regression champion: the line of its expected MAE, ``mae``)."""
    if mae is not None:
        return _mae_line(mae)
    if not estimate:
        return ('<p class="note">No row has been monitored by a calibrated champion yet: '
                "the estimated accuracy appears once rows are scored.</p>")
    error = float((est or {}).get("calibration_error") or 0.0)
    marks = [Mark(float(r.first_row), f"diverged: realized {r.value:.2f}", "alarm")
             for _, r in diverged_spans(estimate, realized, error)]
    points = [((p.first_row + p.last_row) / 2, p.value) for p in estimate]
    chart = line_chart(points, title="estimated accuracy (calibrated confidence, no labels)",
                       y_label="accuracy", marks=marks,
                       x_range=(float(estimate[0].first_row), float(estimate[-1].last_row)))
    return (f"{chart}"
            '<p class="cap">Each point: the mean calibrated confidence of the champion over a '
            "span of rows, labelled or not; where labels came, a red mark where the realized "
            f"accuracy fell outside the estimate's band ({len(marks)} spans).</p>"
            f"{_current(est)}")
