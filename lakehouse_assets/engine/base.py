"""The lake engine protocol: what every asset needs from a table store, and nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import polars as pl
import pyarrow as pa

if TYPE_CHECKING:
    import pyarrow.dataset as ds

    from lakehouse_assets.engine.storage import TableStats


class TableNotFoundError(LookupError):
    """The named table does not exist (yet) in the lake."""


class ConcurrentWriteError(RuntimeError):
    """Another writer committed a conflicting change (e.g. the same transaction identifier)
    after this writer read the table; nothing of this write was committed."""


@dataclass(frozen=True)
class AppTransaction:
    """A Delta transaction identifier: (app_id, version) committed atomically with the data.

    Writers record how far they have consumed their input (a CDC sequence, a file) here, so the
    progress marker and the rows land in one commit and a retry can never duplicate or skip.
    """

    app_id: str
    version: int


@dataclass(frozen=True)
class CommitResult:
    """What one commit wrote: the table, its new version, the rows and where it lives."""

    table: str
    version: int
    rows_written: int
    path: str
    metrics: dict[str, Any] | None = None


@dataclass(frozen=True)
class MergeClause:
    """One WHEN clause of a MERGE. Conditions are SQL over ``source.`` and ``target.`` columns.

    ``columns`` are the target columns an update or insert sets from the same-named source
    columns (None: every column of the target)."""

    when: Literal["matched", "not_matched", "not_matched_by_source"]
    action: Literal["update", "insert", "delete"]
    condition: str | None = None
    columns: tuple[str, ...] | None = None


UPSERT = (MergeClause("matched", "update"), MergeClause("not_matched", "insert"))


def missing_columns(current: list[str], wanted: pa.Schema) -> list[str]:
    """Columns of ``wanted`` that a table with the ``current`` columns lacks."""
    return [name for name in wanted.names if name not in current]


def in_predicate(column: str, values: list[Any]) -> str:
    """``column IN (...)`` for numbers and text (quotes escaped), usable by delta-rs and Spark."""

    def literal(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError(f"cannot compare {column} with {value!r}")
        return str(value) if not isinstance(value, str) else "'" + value.replace("'", "''") + "'"

    return f"`{column}` IN ({', '.join(literal(v) for v in values)})"


APPEND_ONLY = "delta.appendOnly"


def merge_predicate(keys: list[str]) -> str:
    """The MERGE join condition of equal keys between source and target."""
    return " AND ".join(f"target.`{k}` = source.`{k}`" for k in keys)


def clause_assignments(clause: MergeClause, target_columns: list[str]) -> dict[str, str]:
    """target column -> source expression for an update or insert clause."""
    return {f"`{c}`": f"source.`{c}`" for c in clause.columns or target_columns}


@runtime_checkable
class LakeEngine(Protocol):
    """What every asset needs from a table store: Delta reads, atomic writes with transaction
    identifiers, MERGE, change feed, maintenance and metadata."""

    name: str
    # How many transaction identifiers one commit can carry (None: any number).
    max_transactions_per_commit: int | None

    def table_path(self, table: str) -> str: ...

    def exists(self, table: str) -> bool: ...

    def ensure_table(
        self,
        table: str,
        schema: pa.Schema,
        *,
        configuration: dict[str, str | None] | None = None,
    ) -> int:
        """Create an empty table if it does not exist (racing creators are fine), or add the
        columns of ``schema`` an existing table lacks (schema evolution: a column added on the
        source); returns the current version. Writers that decide from what the table holds call
        this first, so there is always a version to detect a concurrent writer against."""
        ...

    def version(self, table: str) -> int | None:
        """Current table version, or None when the table does not exist."""
        ...

    def read(
        self,
        table: str,
        *,
        version: int | None = None,
        columns: list[str] | None = None,
        where_in: dict[str, list[Any]] | None = None,
    ) -> pl.DataFrame:
        """Rows (of a past version when given), optionally only those whose column values are
        in the given lists (pushed down to file statistics)."""
        ...

    def append(
        self,
        table: str,
        df: pl.DataFrame,
        *,
        transactions: list[AppTransaction] | None = None,
        partition_by: list[str] | None = None,
        commit_metadata: dict[str, Any] | None = None,
        configuration: dict[str, str | None] | None = None,
        read_version: int | None = None,
    ) -> CommitResult:
        """Append in one atomic commit with the transaction identifiers.

        ``read_version`` is the version the writer based its decision on (e.g. where it read its
        cursor): a concurrent commit since then that touches the same transaction identifiers
        raises ConcurrentWriteError instead of duplicating data. ``configuration`` applies when
        the table is created."""
        ...

    def overwrite(
        self, table: str, df: pl.DataFrame, *, commit_metadata: dict[str, Any] | None = None
    ) -> CommitResult:
        """Replace the table's rows (and schema) in one commit; earlier versions stay readable."""
        ...

    def merge(
        self,
        table: str,
        df: pl.DataFrame,
        *,
        keys: list[str],
        clauses: tuple[MergeClause, ...] = UPSERT,
        transactions: list[AppTransaction] | None = None,
        commit_metadata: dict[str, Any] | None = None,
        read_version: int | None = None,
    ) -> CommitResult:
        """MERGE ``df`` into the table on equal ``keys`` (default: upsert). A missing table is
        created empty with ``df``'s schema first, so the clauses' conditions still apply.

        ``read_version`` as for ``append``: a conflicting commit since then fails this one."""
        ...

    def delete(
        self,
        table: str,
        column: str,
        values: list[Any],
        *,
        commit_metadata: dict[str, Any] | None = None,
    ) -> int:
        """Delete the rows whose ``column`` is one of ``values`` in one commit (an append-only
        table is opened for that commit and closed again: erasure is the one exception to
        append-only). Earlier versions keep the rows until VACUUM. Returns the rows deleted."""
        ...

    def changes(
        self, table: str, after_version: int, up_to_version: int | None = None
    ) -> tuple[pl.DataFrame, int]:
        """Rows changed in versions (after_version, up_to_version] from the Change Data Feed, with
        ``_change_type``; and the version read up to (the latest when not given)."""
        ...

    def optimize(self, table: str, zorder_by: list[str] | None = None) -> dict[str, Any]:
        """Compact small files (Z-ordered by the columns when given)."""
        ...

    def vacuum(self, table: str, retention_hours: int) -> list[str]:
        """Delete files no version younger than the retention needs; returns the removed files."""
        ...

    def app_transaction_version(self, table: str, app_id: str, at_version: int | None = None) -> int | None:
        """Last committed version of a transaction identifier (as of ``at_version``), or None."""
        ...

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]: ...

    def row_count(self, table: str) -> int: ...

    def head(self, table: str, rows: int = 10) -> pl.DataFrame:
        """A few rows, cheaply (without reading the whole table)."""
        ...

    # Metadata read from the Delta log (engine/storage.py, shared by the engines).
    def tables(self) -> list[str]:
        """Every Delta table under the lake root, as ``layer/name``, sorted."""
        ...

    def schema(self, table: str, version: int | None = None) -> pa.Schema: ...

    def dataset(self, table: str, version: int | None = None) -> ds.Dataset:
        """The table as an Arrow dataset (for DuckDB and other Arrow readers)."""
        ...

    def stats(self, table: str) -> TableStats:
        """Version, rows, files, size and last update, from the log."""
        ...

    def remove_change_files(self, table: str, commit_key: str, *, dry_run: bool = False) -> list[str]:
        """Delete (``dry_run``: list) the change-data files of the commits whose metadata
        carries ``commit_key``."""
        ...
