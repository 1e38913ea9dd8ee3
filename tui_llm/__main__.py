"""Run tui-llm with ``python -m tui_llm``."""

from __future__ import annotations

from tui_llm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
