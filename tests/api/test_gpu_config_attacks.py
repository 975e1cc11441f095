"""Declared GPUs an operator gets wrong: the same index twice is a one-line usage error, not a silent choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedded_service.config import ConfigError, load_settings

from .test_cli_and_server import home, slotdeck

__all__ = ["home"]  # the fixture, used by name below


def test_a_gpu_declared_twice_on_the_command_line_is_a_usage_error(home: dict[str, str]) -> None:
    """Before, `--device 0:16000 --device 0:80000` started a server with one GPU 0 of 80,000 MiB: the last
    declaration won without a word, so a typo in an index promised memory the card does not have."""
    bad = slotdeck("serve", "--port", "0", "--no-probes", "--device", "0:16000:A", "--device", "0:80000:B", env=home)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "slotdeck: invalid settings: devices: GPU 0 is declared more than once"


def test_a_gpu_declared_twice_in_the_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "slotdeck.toml"
    config.write_text("[server]\ndevices = [{index = 1, memory_total_mib = 100}, {index = 1, memory_total_mib = 9}]\n")
    with pytest.raises(ConfigError, match="GPU 1 is declared more than once"):
        load_settings({}, env={}, config_file=config)
    assert [d.index for d in load_settings({}, env={"SLOTDECK_DEVICES": '[{"index": 0}, {"index": 1}]'}).devices] == [0, 1]
