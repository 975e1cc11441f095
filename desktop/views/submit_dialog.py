"""`SubmitDialog`: an operator types a command line and picks where and how it runs.

By default the command line is split like a POSIX shell would (shlex) and run
without a shell: `a && b` passes "&&" to `a` as an argument. Ticking "Run in a
shell" sends `["bash", "-lc", line]` instead, so pipes, `&&`, globs and `$VARS`
work. Mistakes (an unbalanced quote, a bad queue name) are shown in
the dialog in plain words and keep it open; nothing is sent from here: the
caller reads `command()` after the dialog is accepted.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from pydantic import ValidationError
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from embedded_service.model import CommandSubmit

_FIELD_NAMES = {
    "argv": "Command",
    "queue": "Queue",
    "gpus": "GPUs",
    "gpu_mem_mib": "GPU memory",
    "priority": "Priority",
    "max_runtime_s": "Max runtime",
    "max_attempts": "Attempts",
    "env": "Environment",
    "cwd": "Working directory",
}
SHELL = ("bash", "-lc")


def parse_env(text: str) -> dict[str, str]:
    """`NAME=value` lines (blank lines and `#` comments skipped) as a dict; ValueError naming the bad line."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip() or not name.strip().replace("_", "a").isalnum():
            raise ValueError(f"Environment line {number}: write NAME=value (got {line[:40]!r}).")
        env[name.strip()] = value
    return env


def split_command(line: str) -> list[str]:
    """The argv of a command line, as a POSIX shell would split it; ValueError in plain words."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        if "quotation" in str(exc):
            raise ValueError("The command has an unbalanced quote: close it, or escape it with a backslash.") from None
        raise ValueError("The command ends with a lone backslash: remove it or escape it as \\\\.") from None


def describe_errors(error: ValidationError) -> str:
    """Pydantic's errors as one sentence per field, named as the dialog names them."""
    lines = []
    for item in error.errors():
        field = _FIELD_NAMES.get(str(item["loc"][0]) if item["loc"] else "", "Command")
        if item["type"] == "string_pattern_mismatch":
            message = "use letters, digits, '_', '.' or '-' (up to 64, starting with a letter or digit)"
        else:
            message = item["msg"].removeprefix("Value error, ")
            message = message[:1].lower() + message[1:]
        lines.append(f"{field}: {message}.")
    return "\n".join(lines)


class SubmitDialog(QDialog):
    """Collects a `CommandSubmit`; OK only closes the dialog when the command is valid."""

    def __init__(self, queues: Sequence[str] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Submit command")
        self.setMinimumWidth(560)
        self.argv = QLineEdit()
        self.argv.setPlaceholderText("python train.py --epochs 3 'a b'")
        self.shell = QCheckBox("Run in a shell (bash -lc): pipes, &&&&, globs and $VARS work")  # "&&" shows one "&"
        self.shell.setToolTip("Off: the line is split into arguments and run directly, no shell involved.")
        self.shell.toggled.connect(self._explain)
        self.how = QLabel()
        self.how.setWordWrap(True)
        self.env = QPlainTextEdit()
        self.env.setPlaceholderText("NAME=value, one per line")
        self.env.setFixedHeight(self.fontMetrics().height() * 4 + 12)
        self.cwd = QLineEdit()
        self.cwd.setPlaceholderText("the service's working directory")
        self.attempts = QSpinBox()
        self.attempts.setRange(1, 100)
        self.attempts.setToolTip("Runs at most this many times: a failure is retried while attempts remain.")
        self.queue = QComboBox()
        self.queue.setEditable(True)
        self.queue.addItems(list(queues))
        self.queue.setCurrentText("default" if "default" in queues or not queues else queues[0])
        self.gpus = QSpinBox()
        self.gpus.setRange(0, 64)
        self.gpu_mem = QSpinBox()
        self.gpu_mem.setRange(0, 2_000_000)
        self.gpu_mem.setSingleStep(1024)
        self.gpu_mem.setSuffix(" MiB")
        self.gpu_mem.setToolTip("Memory to reserve on each GPU (0: no reservation).")
        self.priority = QSpinBox()
        self.priority.setRange(-1_000_000, 1_000_000)
        self.priority.setToolTip("Lower runs first.")
        self.max_runtime = QDoubleSpinBox()
        self.max_runtime.setRange(0, 7 * 86_400)
        self.max_runtime.setDecimals(0)
        self.max_runtime.setSuffix(" s")
        self.max_runtime.setSpecialValueText("no limit")
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #cf222e")
        self.error.hide()

        form = QFormLayout()
        form.addRow("Command", self.argv)
        form.addRow("", self.shell)
        form.addRow("", self.how)
        form.addRow("Queue", self.queue)
        form.addRow("GPUs", self.gpus)
        form.addRow("GPU memory", self.gpu_mem)
        form.addRow("Priority (lower runs first)", self.priority)
        form.addRow("Max runtime", self.max_runtime)
        form.addRow("Attempts", self.attempts)
        form.addRow("Working directory", self.cwd)
        form.addRow("Environment", self.env)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.argv.textEdited.connect(self.error.hide)
        self._explain()

    def _explain(self) -> None:
        self.how.setText(
            "Runs: bash -lc '<your line>'"
            if self.shell.isChecked()
            else "Runs without a shell: the line is split into arguments; '&&', '|' and '>' are passed on literally."
        )

    def command(self) -> CommandSubmit | None:
        """The command the fields describe, or None after showing why they do not describe one."""
        line = self.argv.text()
        try:
            argv = [*SHELL, line] if self.shell.isChecked() and line.strip() else split_command(line)
            env = parse_env(self.env.toPlainText())
        except ValueError as exc:
            self._fail(str(exc))
            return None
        if not argv:
            self._fail("Enter the command to run.")
            return None
        try:
            return CommandSubmit(
                argv=argv,
                queue=self.queue.currentText().strip(),
                gpus=self.gpus.value(),
                gpu_mem_mib=self.gpu_mem.value(),
                priority=self.priority.value(),
                max_runtime_s=self.max_runtime.value() or None,
                max_attempts=self.attempts.value(),
                env=env,
                cwd=self.cwd.text().strip() or None,
            )
        except ValidationError as exc:
            self._fail(describe_errors(exc))
            return None

    def error_text(self) -> str:
        """What is wrong with the fields, as shown; "" when nothing is shown."""
        return self.error.text() if not self.error.isHidden() else ""

    def accept(self) -> None:
        if self.command() is not None:
            super().accept()

    def _fail(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
