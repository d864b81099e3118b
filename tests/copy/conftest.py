"""What the copy tests share: a HOME holding the clouds.yaml of the module's emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.copy.helpers import write_clouds_yaml
from transfer.emulator import Emulator


@pytest.fixture
def home(tmp_path: Path, emu: Emulator) -> Path:
    write_clouds_yaml(tmp_path, emu)
    return tmp_path
