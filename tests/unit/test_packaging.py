"""The wheel carries what the app reads at run time: themes, the demo corpus, the stylesheet."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO


def test_wheel_ships_themes_and_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("tui_llm-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    themes = {n for n in names if n.startswith("tui_llm/themes/") and n.endswith(".toml")}
    assert {Path(n).stem for n in themes} >= {
        "tui-llm-dark",
        "tui-llm-light",
        "tui-llm-high-contrast",
    }
    assert "tui_llm/catalog/data/demo_corpus.txt" in names
    assert "tui_llm/app.tcss" in names
