"""`LogPane`: one job's log, paged back by log position to its first line, followed at its end, with a marked
line where each attempt began.

Nothing here talks to a server. Pages (`JobLogPage`: whole lines between two log positions, in parts that say
where an attempt began) come in through `show_page`; followed lines through `append`. The pane asks for more
with `earlier_wanted(before)` and for the end again with `latest_wanted()`. It keeps at most `max_lines` lines
(bounded memory whatever the log's size): new lines push the oldest out at the top, an earlier page pushes the
newest out at the bottom (and stops following: "Latest" brings the end back).

Attempt lines come from the server's index of where attempts began, never from the output, and are blocks of
their own kind (`ATTEMPT_STATE`), so a job that prints something like them does not make one.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QFont, QFontDatabase, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from embedded_service.model import JobLogPage, LogPart

MAX_LINES = 20_000  # lines kept in the pane; a page of 128 KiB is about 1,500 lines of 80 characters
PAGE_BYTES = 128 * 1024  # what one "Load earlier" reads (the connection asks for this much)
ATTEMPT_STATE = 1  # QTextBlock.userState() of an attempt line
FIRST_ATTEMPT = JobLogPage(start=0, end=0, first=0, parts=[LogPart(attempt=1, text="")])  # log position 0 begins it


class LogPane(QWidget):
    earlier_wanted = Signal(int)  # log position the wanted page ends at (the first shown line's)
    latest_wanted = Signal()  # the last page again, then follow

    def __init__(self, parent: QWidget | None = None, max_lines: int = MAX_LINES) -> None:
        super().__init__(parent)
        self.max_lines = max_lines
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlaceholderText("Select a job to follow its log.")
        self.marker = QLabel()
        self.earlier_button = QPushButton("Load earlier")
        self.earlier_button.setToolTip("Show the page before the first line shown, back to the log's first line")
        self.earlier_button.clicked.connect(self._load_earlier)
        self.latest_button = QPushButton("Latest")
        self.latest_button.setToolTip("Show the end of the log again and follow it")
        self.latest_button.clicked.connect(self.latest_wanted.emit)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Find in log (Enter: next)")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(200)
        self.search.returnPressed.connect(self.find_next)
        self.save_button = QPushButton("Save log…")
        self.save_button.clicked.connect(self._save)
        bar = QHBoxLayout()
        bar.addWidget(self.marker, 1)
        for widget in (self.earlier_button, self.latest_button, self.search, self.save_button):
            bar.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.text)
        self.job_id = ""
        self.max_attempts = 1
        self._start: int | None = None  # log position of the first shown line (None: nothing shown yet)
        self._first = 0  # earliest position the server still keeps
        self._following = True
        self._first_attempt_next = False  # an empty log's page came: the first lines that follow begin attempt 1
        self._show_marker()

    # ------------------------------------------------------------------ in

    def reset(self, job_id: str, max_attempts: int = 1) -> None:
        """Show `job_id`'s log from scratch ("" for none); its pages and lines come next."""
        self.job_id, self.max_attempts = job_id, max_attempts
        self.text.clear()
        self._start, self._first, self._following = None, 0, True
        self._first_attempt_next = False
        self._show_marker()

    def show_page(self, job_id: str, page: JobLogPage, latest: bool) -> None:
        """The last page (`latest`: replaces what is shown, then lines follow) or the page before the first
        shown line (put above it)."""
        if job_id != self.job_id:
            return
        if latest:
            self.text.clear()
            self._following = True
            cursor = QTextCursor(self.text.document())
            self._insert(cursor, page, at_end=True)
            self._trim_top()
            self._scroll_to_end()
        else:
            if self._start is not None and page.end != self._start:
                return  # an answer to an older question
            bar = self.text.verticalScrollBar()
            top, count = bar.value(), self.text.document().blockCount()
            cursor = QTextCursor(self.text.document())
            cursor.movePosition(QTextCursor.MoveOperation.Start)
            self._insert(cursor, page, at_end=self.text.document().isEmpty())
            added = self.text.document().blockCount() - count
            self._trim_bottom()
            bar.setValue(top + added)  # unwrapped lines scroll by lines: the line that was on top stays there
        self._start, self._first = page.start, page.first
        self._first_attempt_next = latest and page.end == 0 and not page.parts  # see `append`
        self._show_marker()

    def append(self, job_id: str, lines: list[str]) -> None:
        """Lines written after the last page; follows the end unless scrolled up (or paged back)."""
        if not lines or job_id != self.job_id or not self._following:
            return
        bar = self.text.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 1
        if self._first_attempt_next:  # the log was empty: its first byte (position 0) is where attempt 1 began
            self._first_attempt_next = False
            self._insert(QTextCursor(self.text.document()), FIRST_ATTEMPT, at_end=True)
        self.text.appendPlainText("\n".join(line.rstrip("\n") for line in lines))
        self._trim_top()
        self._show_marker()
        if at_end:
            self._scroll_to_end()

    # --------------------------------------------------------------- query

    def has_page(self) -> bool:
        """Whether the log's last page has come (lines follow it)."""
        return self._start is not None

    def attempt_lines(self) -> list[str]:
        """The attempt lines shown, top to bottom."""
        block, found = self.text.document().begin(), []
        while block.isValid():
            if block.userState() == ATTEMPT_STATE:
                found.append(block.text())
            block = block.next()
        return found

    def find_next(self) -> bool:
        """Select the next match of the search text (wrapping to the top); False when none."""
        wanted = self.search.text()
        if not wanted:
            return False
        if self.text.find(wanted):
            return True
        self.text.moveCursor(QTextCursor.MoveOperation.Start)
        return self.text.find(wanted)

    # ------------------------------------------------------------ internals

    def _insert(self, cursor: QTextCursor, page: JobLogPage, at_end: bool) -> None:
        """Insert the page's parts at `cursor` (the start of the document, or the end of an empty one), an
        attempt line before each part where an attempt began. At the end of the document, the page's last
        newline is left out (the next line starts its own block)."""
        document = self.text.document()
        count, kept_state = document.blockCount(), document.begin().userState()
        plain, mark = QTextCharFormat(), QTextCharFormat()
        mark.setFontWeight(QFont.Weight.Bold)
        mark.setForeground(self.palette().highlight())
        marks: set[int] = set()
        for i, part in enumerate(page.parts):
            if part.attempt is not None:
                of = f" of {self.max_attempts}" if self.max_attempts >= part.attempt else ""
                cursor.insertText(f"──── attempt {part.attempt}{of} ────", mark)
                marks.add(cursor.blockNumber())
                if at_end and i == len(page.parts) - 1 and not part.text:
                    break  # an attempt that has written nothing yet: its line ends the log
                cursor.insertBlock()
            last = i == len(page.parts) - 1
            cursor.insertText(part.text[:-1] if at_end and last and part.text.endswith("\n") else part.text, plain)
        # a block split in two keeps its state in the first half: set every inserted block's state, and the
        # state of the block that was first before a page went above it
        added = document.blockCount() - count
        block = document.begin()
        for number in range(added if not at_end else document.blockCount()):
            block.setUserState(ATTEMPT_STATE if number in marks else -1)
            block = block.next()
        if not at_end:
            block.setUserState(kept_state)

    def _trim_top(self) -> None:
        """Keep `max_lines`: the oldest lines go, and the first shown position moves past their bytes."""
        extra = self.text.document().blockCount() - self.max_lines
        if extra <= 0:
            return
        gone, block = 0, self.text.document().begin()
        for _ in range(extra):
            if block.userState() != ATTEMPT_STATE:
                gone += len(block.text().encode("utf-8")) + 1
            block = block.next()
        cursor = QTextCursor(self.text.document())
        cursor.movePosition(QTextCursor.MoveOperation.Start)
        cursor.setPosition(block.position(), QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        if self._start is not None:
            self._start += gone

    def _trim_bottom(self) -> None:
        """Keep `max_lines` after a page above: the newest lines go, and following stops until "Latest"."""
        document = self.text.document()
        if document.blockCount() <= self.max_lines:
            return
        cursor = QTextCursor(document)
        cursor.setPosition(document.findBlockByNumber(self.max_lines - 1).position())
        cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        self._following = False

    def _show_marker(self) -> None:
        if not self.job_id:
            self.marker.setText("")
        elif self._start is None:
            self.marker.setText("Reading the log…")
        elif self.text.document().isEmpty():
            self.marker.setText("No output yet")
        elif self._start > self._first:
            self.marker.setText(f"{_size(self._start - self._first)} earlier not shown")
        elif self._first > 0:
            self.marker.setText(f"From the first line kept ({_size(self._first)} before it rotated away)")
        else:
            self.marker.setText("From the first line")
        if self.job_id and not self._following:
            self.marker.setText(f"{self.marker.text()} · not following (newer lines left out)")
        self.earlier_button.setEnabled(self._start is not None and self._start > self._first)
        self.latest_button.setEnabled(bool(self.job_id) and not self._following)
        self.save_button.setEnabled(bool(self.job_id))

    def _load_earlier(self) -> None:
        if self._start is not None and self._start > self._first:
            self.earlier_wanted.emit(self._start)

    def _save(self) -> None:
        if not self.job_id:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save log", f"{self.job_id}.log", "Log files (*.log *.txt)")
        if path:
            Path(path).write_text(self.text.toPlainText() + "\n", encoding="utf-8")

    def _scroll_to_end(self) -> None:
        bar = self.text.verticalScrollBar()
        bar.setValue(bar.maximum())


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 10 * 1024 else f"{n / 1024:,.0f} KiB" if n < 10 * 1024 * 1024 else f"{n / 2**20:,.0f} MiB"
