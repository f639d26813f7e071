"""In-place upgrades of databases written by earlier releases.

``metadata.create_all`` adds the tables that are missing but never changes one that
exists; what an existing table needs is done here, once, inside the same transaction,
and each step is a no-op on a database that already has it. State written before a
step still opens and keeps every value.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

_LABEL_TYPE = text(
    "SELECT data_type FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = 'rows' AND column_name = 'label'"
)


def widen_label_column(conn: Connection) -> bool:
    """Make PostgreSQL's ``rows.label`` a double (it was an integer, which would round
    or refuse a regression target); class values keep their numbers. SQLite stores a
    float in an INTEGER column as it is, so it needs nothing. Returns whether it changed."""
    if conn.dialect.name != "postgresql":
        return False
    if conn.execute(_LABEL_TYPE).scalar() not in ("integer", "bigint", "smallint"):
        return False
    conn.execute(text("ALTER TABLE rows ALTER COLUMN label TYPE DOUBLE PRECISION"))
    return True


def upgrade(conn: Connection) -> None:
    """Every upgrade step, in order."""
    widen_label_column(conn)
