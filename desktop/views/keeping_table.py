"""`KeepingTable`: a table view whose selection stays on the items the operator picked.

Plain `QTableView` in single-selection mode moves the selection to a neighbour
when the selected row is removed ("ensure one selected item"), and loses it on
a model reset. Between two snapshots a selected waiter could so become another
queue's waiter, and a quick Yes on the confirm acted on a row nobody picked.

Here the selection follows the item's id (the model answers `ID_ROLE` with a
string per row): when that item leaves, nothing is selected (so the actions
that need a selection disable themselves); when a model resets (a new set of
queues, audit entries re-sorted), the same ids are selected again.
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelection, QItemSelectionModel, QModelIndex, QPersistentModelIndex, Signal
from PySide6.QtWidgets import QAbstractItemView, QTableView, QWidget

from ..models.table import ID_ROLE

Index = QModelIndex | QPersistentModelIndex


class KeepingTable(QTableView):
    """A row-selecting table; `selection_lost` fires when selected items left the model."""

    selection_lost = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._held: list[str] = []

    def setModel(self, model: object) -> None:
        old = self.model()
        if old is not None:
            old.modelAboutToBeReset.disconnect(self._before_reset)
            old.modelReset.disconnect(self._after_reset)
        super().setModel(model)  # type: ignore[arg-type]
        new = self.model()
        if new is not None:
            new.modelAboutToBeReset.connect(self._before_reset)
            new.modelReset.connect(self._after_reset)

    # ---------------------------------------------------------- queries

    def selected_ids(self) -> list[str]:
        """Ids of the selected rows, top to bottom."""
        model = self.selectionModel()
        if model is None:
            return []
        rows = sorted(model.selectedRows(), key=lambda index: index.row())
        return [str(index.data(ID_ROLE)) for index in rows if index.data(ID_ROLE) is not None]

    def row_of_id(self, item_id: str) -> int | None:
        model = self.model()
        if model is None:
            return None
        for row in range(model.rowCount()):
            if model.index(row, 0).data(ID_ROLE) == item_id:
                return row
        return None

    def select_ids(self, ids: list[str]) -> None:
        """Select exactly these items (those still shown); the first becomes current."""
        model, selection_model = self.model(), self.selectionModel()
        if model is None or selection_model is None:
            return
        wanted = set(ids)
        selection = QItemSelection()
        first: QModelIndex | None = None
        last_column = max(0, model.columnCount() - 1)
        for row in range(model.rowCount()):
            if model.index(row, 0).data(ID_ROLE) in wanted:
                selection.select(model.index(row, 0), model.index(row, last_column))
                first = first or model.index(row, 0)
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect
        selection_model.select(selection, flags)
        selection_model.setCurrentIndex(first or QModelIndex(), QItemSelectionModel.SelectionFlag.NoUpdate)

    # ------------------------------------------------------- Qt overrides

    def rowsAboutToBeRemoved(self, parent: Index, start: int, end: int) -> None:
        """Qt would move the current row, and in single selection the selection, to a neighbour: don't."""
        current = self.currentIndex()
        removing_current = current.isValid() and current.parent() == parent and start <= current.row() <= end
        selected_leaving = any(
            start <= index.row() <= end and index.parent() == parent
            for index in (self.selectionModel().selectedRows() if self.selectionModel() else [])
        )
        if removing_current and self.selectionModel() is not None:
            self.selectionModel().clearCurrentIndex()
        super().rowsAboutToBeRemoved(parent, start, end)
        if selected_leaving:
            self.selection_lost.emit()

    # ----------------------------------------------------------- resets

    def _before_reset(self) -> None:
        self._held = self.selected_ids()

    def _after_reset(self) -> None:
        if self._held:
            held, self._held = self._held, []
            self.select_ids(held)
            if len(self.selected_ids()) < len(held):
                self.selection_lost.emit()
