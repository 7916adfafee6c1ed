"""What a query may see: a registered dataset narrowed to the columns an agreement grants."""

from __future__ import annotations

from dataclasses import dataclass

from catalog.columns import ColumnInfo, Role
from catalog.registry import Dataset

__all__ = ["TableView"]


@dataclass(frozen=True)
class TableView:
    """A catalog ``Dataset`` plus the column names the agreement allows.

    The dataset's ``id`` column is the privacy unit; it is usable only inside ``COUNT(DISTINCT id)`` (the
    engine counts units anyway for suppression), whatever the agreement lists.
    """

    dataset: Dataset
    columns: frozenset[str]

    @property
    def name(self) -> str:
        """The dataset's name, the only table a query may read."""
        return self.dataset.name

    @property
    def id_column(self) -> str:
        """The privacy unit's column."""
        return self.dataset.id_column

    @property
    def max_rows_per_unit(self) -> int:
        """The declared bound on one unit's rows, which fixes every aggregate's sensitivity."""
        return self.dataset.max_rows_per_unit

    def info(self, column: str) -> ColumnInfo | None:
        """The column's declaration if the agreement grants it (or it is the unit column), else None."""
        info = self.dataset.columns.get(column)
        if info is None:
            return None
        if column in self.columns or info.role is Role.ID:
            return info
        return None
