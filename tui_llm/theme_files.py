"""Theme files (TOML): the ones shipped in ``themes/`` and the user's own, read without Textual."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tui_llm import paths

COLOR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "success",
    "warning",
    "error",
)
DEFAULT_THEME = "tui-llm-dark"


class ThemeFileError(ValueError):
    """A theme file that cannot be used; ``str()`` names the file in one line."""


@dataclass(frozen=True)
class ThemeSpec:
    """What a theme file says, ready to become a ``textual.theme.Theme``."""

    name: str
    dark: bool
    colors: dict[str, str]
    variables: dict[str, str] = field(default_factory=dict)
    source: str = ""


def parse_theme(text: str, source: str) -> ThemeSpec:
    """Parse one theme file's text; raises ``ThemeFileError`` naming ``source``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ThemeFileError(f"{source}: not valid TOML ({exc})") from None
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ThemeFileError(f"{source}: needs a name")
    if not isinstance(data.get("primary"), str):
        raise ThemeFileError(f"{source}: needs a primary colour")
    colors = {key: str(data[key]) for key in COLOR_KEYS if isinstance(data.get(key), str)}
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ThemeFileError(f"{source}: [variables] must be a table")
    return ThemeSpec(
        name=name.strip(),
        dark=bool(data.get("dark", True)),
        colors=colors,
        variables={str(k): str(v) for k, v in variables.items()},
        source=source,
    )


def builtin_theme_dir() -> Path:
    """Our shipped themes: inside the wheel, or the repository's ``themes/`` when editable."""
    packaged = Path(str(resources.files("tui_llm"))) / "themes"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "themes"


def user_theme_dir() -> Path:
    return paths.config_dir() / "themes"


def iter_theme_files() -> Iterator[tuple[Path, bool]]:
    """(path, is_builtin) for every theme file, built-in first."""
    for folder, builtin in ((builtin_theme_dir(), True), (user_theme_dir(), False)):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                yield path, builtin


def load_themes() -> tuple[list[ThemeSpec], list[str]]:
    """Every usable theme, and one line per broken file."""
    specs: list[ThemeSpec] = []
    errors: list[str] = []
    for path, _builtin in iter_theme_files():
        try:
            specs.append(parse_theme(path.read_text(encoding="utf-8"), path.name))
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"{path.name}: cannot read ({exc})")
        except ThemeFileError as exc:
            errors.append(str(exc))
    return specs, errors
