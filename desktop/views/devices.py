"""`DevicesView`: one card per GPU with memory used against reserved, utilisation, temperature and its leases.

Admission reserves memory for leases while the probe reports what processes really
use; an operator needs both on one bar to see over-promised or idle-but-reserved GPUs.
Each card also says what admission can still promise there (free, other programs'
memory) and, when its figures cannot be trusted, why and what that means for new work
(stale, unreadable, lost, unified memory).
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from embedded_service.model import DeviceInfo, LeaseInfo, Snapshot

USED_COLOR = "#3fb950"
RESERVED_COLOR = "#a371f7"
WARNING_COLOR = "#bf8700"  # readable on light and dark backgrounds


def gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


def memory_caption(total_mib: float | None, used_mib: float | None, reserved_mib: float) -> str:
    """'used X of Y GiB · reserved Z GiB', saying 'unknown' for a figure the probe could not read."""
    if total_mib is None:
        used = "unknown" if used_mib is None else gib(used_mib)
        return f"used {used} · reserved {gib(reserved_mib)} · total unknown"
    used = "unknown" if used_mib is None else f"{used_mib / 1024:.1f}"
    return f"used {used} of {gib(total_mib)} · reserved {gib(reserved_mib)}"


_HEALTH_TEXT = {
    "stale": "Last reading failed: admitting on the last good figures for a few seconds",
    "unreadable": "Memory unknown: no new work that asks for GPU memory",
    "lost": "GPU lost: no new work",
}


def health_text(d: DeviceInfo) -> str:
    """What the device's health means for new work, with the reason; '' when all is well."""
    if d.health == "ok":
        return ""
    if d.health == "unified":
        if d.memory_budget_mib is None:
            return "Unified memory (no size reported): memory requests are refused, no budget is set"
        return f"Unified memory (no size reported): memory requests against a budget of {gib(d.memory_budget_mib)}"
    text = _HEALTH_TEXT.get(d.health, d.health)
    return f"{text} ({d.health_reason})" if d.health_reason else text


def admission_caption(d: DeviceInfo) -> str:
    """'free for new leases X · other programs Y' as admission counts them; '' when it counts no memory here."""
    parts = []
    if d.memory_free_mib is not None:
        parts.append(f"free for new leases {gib(max(d.memory_free_mib, 0))}")
    if d.memory_foreign_mib:
        parts.append(f"other programs {gib(d.memory_foreign_mib)}")
    if not d.per_process and d.health in ("ok", "stale"):
        parts.append("no per-process figures: reservations may hide other programs' memory")
    return " · ".join(parts)


def lease_line(lease_id: str, lease: LeaseInfo | None) -> str:
    """One lease as an operator reads it: queue · owner · job, with its GPU memory and stuck state."""
    if lease is None:
        return f"lease {lease_id}"
    parts = [lease.queue, lease.owner or "anonymous", f"job {lease.job_id}" if lease.job_id else f"lease {lease.id}"]
    if lease.gpu_mem_mib:
        parts.append(gib(lease.gpu_mem_mib))
    if lease.stuck:
        parts.append("stuck")
    return " · ".join(parts)


class MemoryBar(QWidget):
    """Reserved memory as a full-height band and actually used memory as a solid inner bar, against the total."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._figures: tuple[float | None, float | None, float] = (None, None, 0.0)
        self.setMinimumHeight(18)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(320, 20)

    def set_figures(self, total_mib: float | None, used_mib: float | None, reserved_mib: float) -> None:
        figures = (total_mib, used_mib, reserved_mib)
        if figures != self._figures:
            self._figures = figures
            self.setToolTip(memory_caption(*figures))
            self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        total, used, reserved = self._figures
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        p = QPainter(self)
        p.setPen(self.palette().color(QPalette.ColorRole.Mid))
        p.setBrush(self.palette().color(QPalette.ColorRole.Base))
        p.drawRect(rect)
        if total:
            reserved_color = QColor(RESERVED_COLOR)
            reserved_color.setAlpha(110)
            p.fillRect(self._part(rect, reserved / total, 1.0), reserved_color)
            if used is not None:
                p.fillRect(self._part(rect, used / total, 0.5), QColor(USED_COLOR))
        p.end()

    @staticmethod
    def _part(rect: QRectF, fraction: float, height: float) -> QRectF:
        """The left `fraction` of the bar, `height` of it tall and vertically centred."""
        h = rect.height() * height
        return QRectF(rect.left(), rect.top() + (rect.height() - h) / 2, rect.width() * min(max(fraction, 0.0), 1.0), h)


class DeviceCard(QFrame):
    """One GPU: name and index, memory bar and caption, utilisation and temperature, error, leases."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel()
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.memory_bar = MemoryBar()
        self.memory = QLabel()
        self.admission = QLabel()
        self.health = QLabel()
        self.health.setWordWrap(True)
        self.health.setStyleSheet(f"color: {WARNING_COLOR}; font-weight: bold;")
        self.figures = QLabel()
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {WARNING_COLOR};")
        self.leases = QLabel()
        self.leases.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        widgets = (self.title, self.health, self.memory_bar, self.memory, self.admission, self.figures, self.error)
        for widget in (*widgets, self.leases):
            layout.addWidget(widget)

    def show_device(self, d: DeviceInfo, leases: dict[str, LeaseInfo]) -> None:
        self.title.setText(f"GPU {d.index} · {d.name}")
        self.title.setToolTip("\n".join(x for x in (d.uuid, d.pci_bus_id, f"figures from {d.source}") if x))
        self.memory_bar.set_figures(d.memory_total_mib, d.memory_used_mib, d.memory_reserved_mib)
        self.memory.setText(memory_caption(d.memory_total_mib, d.memory_used_mib, d.memory_reserved_mib))
        self.admission.setText(admission_caption(d))
        self.admission.setVisible(bool(self.admission.text()))
        self.health.setText(f"⚠ {health_text(d)}" if d.health != "ok" else "")
        self.health.setVisible(d.health != "ok")
        util = "—" if d.utilization_pct is None else f"{d.utilization_pct:.0f} %"
        temp = "—" if d.temperature_c is None else f"{d.temperature_c:.0f} °C"
        procs = len(d.processes)
        self.figures.setText(f"utilisation {util} · temperature {temp} · {procs} process{'' if procs == 1 else 'es'}")
        self.error.setText(f"⚠ {d.error}" if d.error else "")
        self.error.setVisible(bool(d.error))
        lines = [lease_line(lease_id, leases.get(lease_id)) for lease_id in d.leases]
        self.leases.setText("Leases:\n  " + "\n  ".join(lines) if lines else "No leases")


class DevicesView(QWidget):
    """The GPUs of one connection; when there are none, the probe's one-line reason."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._cards: dict[int, DeviceCard] = {}
        self.reason = QLabel("Waiting for the first figures from the service…")
        self.reason.setWordWrap(True)
        self.selection = QLabel()
        self.selection.setWordWrap(True)
        self.legend = QLabel(
            f'<span style="color:{USED_COLOR}">■</span> used (what processes hold, from the probe) &nbsp; '
            f'<span style="color:{RESERVED_COLOR}">■</span> reserved (promised to leases)'
        )
        self._list = QVBoxLayout()
        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.addWidget(self.reason)
        body_layout.addWidget(self.selection)
        body_layout.addWidget(self.legend)
        body_layout.addLayout(self._list)
        body_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

    def card(self, index: int) -> DeviceCard:
        return self._cards[index]

    def device_indexes(self) -> list[int]:
        return list(self._cards)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Show the snapshot's GPUs, reusing the cards of those still there (no flicker at 10 snapshots/s)."""
        devices = sorted(snap.devices, key=lambda d: d.index)
        self.reason.setVisible(not devices)
        self.selection.setText(f"Using only some GPUs: {snap.gpu_selection}" if snap.gpu_selection else "")
        self.selection.setVisible(bool(snap.gpu_selection))
        self.legend.setVisible(bool(devices))
        if not devices:
            self.reason.setText(f"No GPUs: {snap.gpu_probe or 'the service reports none'}")
        wanted = [d.index for d in devices]
        for index in [i for i in self._cards if i not in wanted]:
            card = self._cards.pop(index)
            self._list.removeWidget(card)
            card.setParent(None)
            card.deleteLater()
        if wanted != list(self._cards):
            for card in self._cards.values():
                self._list.removeWidget(card)
            self._cards = {i: self._cards[i] if i in self._cards else DeviceCard() for i in wanted}
            for card in self._cards.values():
                self._list.addWidget(card)
                card.show()  # now, not from Qt's queued show, so the view is complete when this returns
        leases = {lease.id: lease for lease in snap.leases}
        for d in devices:
            self._cards[d.index].show_device(d, leases)
