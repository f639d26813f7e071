"""Event times: epoch seconds or ISO 8601, NaT for what no timestamp can hold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from runtime.intake.validation import parse_times


def test_numbers_and_text_both_read_and_the_unreadable_become_nat() -> None:
    got = parse_times(pd.Series(["2020-01-01", "2021-03-04T10:00:00+01:00", None, "12", "x",
                                 "1e30"]))
    assert got.tolist()[:4] == [pd.Timestamp("2020-01-01", tz="UTC"),
                                pd.Timestamp("2021-03-04 09:00", tz="UTC"), pd.NaT,
                                pd.Timestamp(12, unit="s", tz="UTC")]
    assert got.iloc[4:].isna().all()


def test_missing_and_out_of_range_epoch_seconds_are_nat_not_an_error() -> None:
    """pandas converts under errstate(over="raise"): a NaN, an infinity or 1e30 among
    the numbers once raised FloatingPointError / OverflowError from inside it."""
    got = parse_times(pd.Series([1.5e9, np.nan, 1e30, 3.0, -np.inf]))
    assert got.isna().tolist() == [False, True, True, False, True]
    assert parse_times(pd.Series([np.nan] * 4)).isna().all()
    assert str(got.dtype) == "datetime64[ns, UTC]"
