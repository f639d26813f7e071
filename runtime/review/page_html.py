"""HTML pieces shared by the review page's sections: escaping, numbers, tables.

Every value from the state goes through :func:`esc` (or :func:`num`) before it reaches
the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from runtime.review.charts import line_chart
from runtime.store.payloads import Gate

__all__ = ["esc", "evlink", "feature_table", "gate_table", "kv", "num", "progress_chart", "table"]


def esc(x: Any) -> str:
    return escape("" if x is None else str(x))


def num(x: Any, digits: int = 3) -> str:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return esc(x) if x is not None else "–"
    if isinstance(x, int):
        return f"{x:,}"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.3g}"
    return f"{x:.{digits}f}"


def evlink(i: int) -> str:
    return f'<a class="evl" href="#ev-{i}">#{i}</a>'


def kv(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs if v not in (None, ""))
    return f'<dl class="kv">{rows}</dl>'


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    num_cols: Sequence[int] = (),
    row_cls: Sequence[str] | None = None,
) -> str:
    th = "".join(
        f'<th class="num">{h}</th>' if i in num_cols else f"<th>{h}</th>"
        for i, h in enumerate(head)
    )
    body = []
    for r, cells in enumerate(rows):
        cls = f' class="{row_cls[r]}"' if row_cls and row_cls[r] else ""
        tds = "".join(
            f'<td class="num">{c}</td>' if i in num_cols else f"<td>{c}</td>"
            for i, c in enumerate(cells)
        )
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# -- pieces shared by the story and the event details ------------------------------------
def gate_table(p: Gate, compact: bool = False) -> str:
    """A gate decision's checks as a table (its reasons when it has no checks)."""
    if not p.checks:
        return f'<p class="reason">{esc(" ".join(p.reasons))}</p>'
    rows, cls = [], []
    for c in p.checks:
        ch, ca = c.champion, c.candidate
        delta = ca - ch if isinstance(ch, int | float) and isinstance(ca, int | float) else None
        ok = bool(c.passed)
        rows.append(
            [
                f'<span class="{"pass" if ok else "fail"}">{"pass" if ok else "FAIL"}</span>',
                esc(c.name),
                esc(c.metric),
                num(ch),
                num(ca),
                ("+" if delta is not None and delta >= 0 else "") + num(delta),
                esc(c.threshold),
                num(c.n),
                f'<span class="reason">{esc(c.reason)}</span>',
            ]
        )
        cls.append("" if ok else "drifted")
    head = [
        "",
        "check",
        "metric",
        f"champion {esc(p.champion)}",
        f"candidate {esc(p.candidate)}",
        "change",
        "rule",
        "rows",
        "why",
    ]
    if compact:  # the story's headline already says why
        keep = (0, 1, 3, 4, 5, 6)
        head = [head[i] for i in keep]
        rows = [[row[i] for i in keep] for row in rows]
        return table(head, rows, num_cols=(2, 3, 4), row_cls=cls)
    return table(head, rows, num_cols=(3, 4, 5, 7), row_cls=cls)


def progress_chart(points: Sequence[tuple[int, float, float | None]], title: str) -> str:
    if not points:
        return ""
    return line_chart(
        [(float(e), loss) for e, loss, _ in points],
        title=title,
        y_label="training loss",
        x_label="epoch",
        width=460,
        height=180,
    )


def feature_table(d: dict[str, Any]) -> str:
    feats = [r for r in d.get("features", []) if isinstance(r, dict)]
    feats.sort(key=lambda r: (not r.get("drifted"), r.get("p_adjusted") or 1.0))
    rows = [
        [
            esc(r.get("feature")),
            esc(r.get("type")),
            num(r.get("ref_mean"), 4),
            num(r.get("cur_mean"), 4),
            num(r.get("statistic")),
            num(r.get("p_value")),
            num(r.get("p_adjusted")),
            '<span class="fail">drifted</span>' if r.get("drifted") else "–",
        ]
        for r in feats
    ]
    cls = ["drifted" if r.get("drifted") else "" for r in feats]
    head = [
        "feature",
        "type",
        "reference mean",
        "window mean",
        "statistic",
        "p-value",
        "adjusted p",
        "verdict",
    ]
    test = esc(d.get("test") or "")
    how = (
        "the raw statistic against the threshold (no p-values)"
        if d.get("calibration") == "threshold"
        else f"{esc(d.get('correction'))} correction"
    )
    note = (
        f'<p class="cap">{test} test per feature, {how}; '
        f"{num(d.get('reference_rows'))} reference rows vs {num(d.get('window_rows'))} in the "
        "window.</p>"
    )
    return note + table(head, rows, num_cols=(2, 3, 4, 5, 6), row_cls=cls)
