"""User settings in settings.toml: model folders, theme, recent models, load and sampling defaults,
and a load profile per model.

A file that cannot be read or parsed gives one warning line and the defaults, and is never
written: the user has to fix it, and their text is what they fix. What the app saves meanwhile
goes to `settings.unsaved.toml` beside it (the save returns that path for the app to show).
A value of the wrong type or out of range falls back to its default alone; an unknown key (a
misspelling, or one from a newer tui-llm) is named in the warning, with the close known key, and
kept. Saves are atomic (temp file + `os.replace`) and edit the existing TOML document, so the
user's comments, key order, formatting and unknown keys survive; only values that changed are
written.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import tomlkit
from tomlkit.exceptions import TOMLKitError

from tui_llm import paths
from tui_llm.context_fit import OVERFLOW_POLICIES, OverflowPolicy
from tui_llm.engine.protocol import KV_CACHE_TYPES, LoadSettings, OffloadValue, SamplingParams
from tui_llm.sampling_ranges import SAMPLING_RANGES, SamplingRange
from tui_llm.tomlfile import atomic_write, merge_values

OffloadSetting = Union[Literal["auto", "all"], int]  # noqa: UP007 - a runtime alias on 3.10

MAX_RECENT = 9
DEFAULT_THEME = "tui-llm-dark"
SETTINGS_FILE = "settings.toml"
UNSAVED_FILE = "settings.unsaved.toml"  # where saves go while settings.toml does not parse
_HEADER = (
    "tui-llm settings. Edit freely: comments and unknown keys are kept when tui-llm saves.",
    "gpu_safety_margin_mib = 512 would leave that much VRAM free (absent: automatic).",
)


@dataclass(frozen=True)
class LoadProfile:
    """How to load a model: offload ("auto", "all" or a layer count), context, KV type, flash,
    and for a mixture-of-experts model the layers whose experts stay in RAM (a count or "all")."""

    offload: OffloadSetting = "auto"
    n_ctx: int = 4096
    kv_cache_type: str = "f16"
    flash_attn: bool = False
    n_cpu_moe: OffloadValue = 0


@dataclass
class Settings:
    """Everything tui-llm remembers between runs; the app owns it and changes it in place.

    Model paths (recent_models, last_model, profiles' keys) are absolute; `model_dirs` are kept as
    the user wrote them (`~` allowed). `gpu_safety_margin_mib` None means automatic.
    """

    model_dirs: list[str] = field(default_factory=list)
    theme: str = DEFAULT_THEME
    recent_models: list[str] = field(default_factory=list)
    last_model: str | None = None
    load: LoadProfile = field(default_factory=LoadProfile)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    system_prompt: str = ""
    gpu_safety_margin_mib: int | None = None
    profiles: dict[str, LoadProfile] = field(default_factory=dict)
    # A reasoning model's thinking stays open after the answer starts (else it collapses).
    show_thinking: bool = False
    # [chat] context_overflow: when the next turn would not fit the context, "trim" sends the
    # system prompt and the newest turns that fit; "stop" sends nothing and says so.
    context_overflow: OverflowPolicy = "trim"


def settings_path() -> Path:
    """Where settings.toml lives (the user config directory)."""
    return paths.config_dir() / SETTINGS_FILE


def load_settings(path: Path | None = None) -> tuple[Settings, str | None]:
    """Read the settings, never failing: (settings, None) or (best effort, one-line warning)."""
    path = settings_path() if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings(), None
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        return Settings(), _one_line(f"cannot read {path} ({reason}); using default settings")
    try:
        data = tomlkit.parse(text).unwrap()
    except TOMLKitError as err:
        return Settings(), _one_line(
            f"{path} is not valid TOML ({err}); using default settings, the file is left as is "
            f"(changes made meanwhile are saved in {path.with_name(UNSAVED_FILE).name})"
        )
    bad: list[str] = []
    settings = _settings_from(data, bad)
    problems = []
    if bad:
        shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
        problems.append(f"ignored invalid {shown}; using the defaults for those")
    unknown = unknown_keys(data)
    if unknown:
        shown = ", ".join(unknown[:4]) + (
            f" and {len(unknown) - 4} more" if len(unknown) > 4 else ""
        )
        problems.append(f"unknown {'key' if len(unknown) == 1 else 'keys'} {shown} (kept, unused)")
    if not problems:
        return settings, None
    return settings, _one_line(f"{path}: " + "; ".join(problems))


def save_settings(settings: Settings, path: Path | None = None) -> Path | None:
    """Write the settings atomically into the existing document, keeping the user's comments.

    A file that does not parse (bad TOML, bytes that are not UTF-8) is left as it is, for the
    user to fix: the settings go whole to ``settings.unsaved.toml`` beside it instead, and that
    path is returned (otherwise None). A symlinked settings file is written through the link.
    Raises ``OSError`` when the file cannot be read or written.
    """
    path = settings_path() if path is None else path
    if path.is_symlink():
        path = path.resolve()
    old: dict[str, Any] = {}  # what the file means now; empty for a new file, so all is written
    doc = _new_document()
    try:
        doc = tomlkit.parse(path.read_text(encoding="utf-8"))
        old = _values(_settings_from(doc.unwrap(), []))
    except FileNotFoundError:
        pass
    except (UnicodeDecodeError, TOMLKitError):
        unsaved = path.with_name(UNSAVED_FILE)
        side = _new_document()
        side.add(tomlkit.comment(f"{path.name} does not parse: tui-llm saved here instead."))
        side.add(tomlkit.comment(f"Fix {path.name}, or copy this file over it."))
        merge_values(side, {}, _values(settings))
        atomic_write(unsaved, tomlkit.dumps(side))
        return unsaved
    merge_values(doc, old, _values(settings))
    atomic_write(path, tomlkit.dumps(doc))
    return None


def remember_model(settings: Settings, model_path: str | os.PathLike[str]) -> None:
    """Put a model first in the recent list (at most MAX_RECENT) and make it the last model."""
    key = model_key(model_path)
    settings.recent_models = [key, *(p for p in settings.recent_models if p != key)][:MAX_RECENT]
    settings.last_model = key


def profile_for(settings: Settings, model_path: str | os.PathLike[str]) -> LoadProfile:
    """The load profile saved for a model, or the default load settings."""
    return settings.profiles.get(model_key(model_path), settings.load)


def set_profile(
    settings: Settings, model_path: str | os.PathLike[str], profile: LoadProfile | None
) -> None:
    """Save (or, with None, forget) a model's load profile."""
    key = model_key(model_path)
    if profile is None:
        settings.profiles.pop(key, None)
    else:
        settings.profiles[key] = profile


def remember_load(settings: Settings, loaded: LoadSettings) -> None:
    """Record a successful load: the model goes first in the recent list, its settings become
    its profile (offload as loaded, a layer count or "all")."""
    remember_model(settings, loaded.model_path)
    profile = LoadProfile(
        offload=loaded.offload_layers,
        n_ctx=loaded.n_ctx,
        kv_cache_type=loaded.kv_cache_type,
        flash_attn=loaded.flash_attn,
        n_cpu_moe=loaded.n_cpu_moe,
    )
    set_profile(settings, loaded.model_path, profile)


def store_sampling(settings: Settings, sampling: SamplingParams, system_prompt: str) -> None:
    """Keep the sampling panel's values as the defaults for the next replies and runs."""
    settings.sampling = sampling
    settings.system_prompt = system_prompt


def model_dirs(settings: Settings) -> list[Path]:
    """The folders to search for models: the default one, then the user's (expanded)."""
    found: list[Path] = []
    for folder in (paths.default_models_dir(), *map(Path, settings.model_dirs)):
        folder = folder.expanduser()
        if folder not in found:
            found.append(folder)
    return found


def model_key(model_path: str | os.PathLike[str]) -> str:
    """How settings name a model file: absolute, `~` expanded, symlinks kept (HF snapshots).

    This is also the path handed to llama.cpp: a split model's shards are found by the first
    shard's name, and a Hugging Face snapshot entry links to a blob named by its hash.
    """
    return os.path.abspath(os.path.expanduser(os.fspath(model_path)))


def model_file_identity(model_path: str | os.PathLike[str]) -> tuple[int, int] | str:
    """What two paths to one model file have in common, for comparing them: the (device, inode)
    pair, through symlinks (two snapshots of one blob, a link to a model), or the `model_key` of
    a path that cannot be read. Never a path to load: that is `model_key`.
    """
    try:
        status = os.stat(os.path.expanduser(os.fspath(model_path)))
    except OSError:
        return model_key(model_path)
    return (status.st_dev, status.st_ino)


# --- reading -------------------------------------------------------------------------------------

_PROFILE_KEYS = tuple(item.name for item in dataclasses.fields(LoadProfile))
_KNOWN: dict[str, tuple[str, ...]] = {
    "": (
        "theme",
        "model_dirs",
        "recent_models",
        "last_model",
        "system_prompt",
        "gpu_safety_margin_mib",
        "show_thinking",
        "load",
        "sampling",
        "profiles",
        "chat",
    ),
    "load": _PROFILE_KEYS,
    "chat": ("context_overflow",),
    "sampling": (*SAMPLING_RANGES, "stop"),
}


def unknown_keys(data: Mapping[str, Any]) -> list[str]:
    """The keys tui-llm does not know, as dotted names, each with the known key it is closest
    to where there is one: ``["temprature (sampling.temperature?)", "plugins"]``."""
    every = [f"{table}.{key}" if table else key for table, keys in _KNOWN.items() for key in keys]
    tables: list[tuple[str, Mapping[str, Any], tuple[str, ...]]] = [("", data, _KNOWN[""])]
    for name in ("load", "sampling", "chat"):
        if isinstance(data.get(name), dict):
            tables.append((name, data[name], _KNOWN[name]))
    profiles = data.get("profiles")
    if isinstance(profiles, dict):
        for model, entry in profiles.items():
            if isinstance(entry, dict):
                tables.append((f"profiles.{json.dumps(model)}", entry, _PROFILE_KEYS))
    found = []
    for prefix, table, known in tables:
        for key in table:
            if key in known:
                continue
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
            if near:
                guess = f"{prefix}.{near[0]}" if prefix else near[0]
            else:
                leaves = {name.rpartition(".")[2]: name for name in every}
                close = difflib.get_close_matches(key, list(leaves), n=1, cutoff=0.75)
                guess = leaves[close[0]] if close else ""
            name = f"{prefix}.{key}" if prefix else key
            found.append(f"{name} ({guess}?)" if guess else name)
    return found


Check = Callable[[object], Any]
_MISSING = object()


def _settings_from(data: Mapping[str, Any], bad: list[str]) -> Settings:
    """Build Settings from plain TOML data; each invalid value is named in `bad` and defaulted."""
    default = Settings()

    def take(table: Mapping[str, Any], prefix: str, key: str, check: Check, fallback: Any) -> Any:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return fallback
        checked = check(value)
        if checked is _MISSING:
            bad.append(prefix + key)
            return fallback
        return checked

    # Top-level keys first, so the warning names problems in the order a file usually has them.
    theme = take(data, "", "theme", _text(empty=False), default.theme)
    model_dirs = take(data, "", "model_dirs", _strings, default.model_dirs)
    recent = map(model_key, take(data, "", "recent_models", _strings, default.recent_models))
    last_model = take(data, "", "last_model", _text(empty=False), default.last_model)
    system_prompt = take(data, "", "system_prompt", _text(empty=True), default.system_prompt)
    margin = take(data, "", "gpu_safety_margin_mib", _integer(0), None)
    show_thinking = take(data, "", "show_thinking", _boolean, default.show_thinking)
    load = _profile_from(_table(data, "load", bad), "load.", default.load, bad)
    chat_table = _table(data, "chat", bad)
    overflow = take(chat_table, "chat.", "context_overflow", _one_of(OVERFLOW_POLICIES), "trim")
    sampling_table = _table(data, "sampling", bad)
    base = default.sampling

    def sample(key: str, check: Check) -> Any:
        return take(sampling_table, "sampling.", key, check, getattr(base, key))

    sampling = SamplingParams(
        **{key: sample(key, _in_range(valid)) for key, valid in SAMPLING_RANGES.items()},
        stop=tuple(sample("stop", _stop_strings)),
    )
    profiles: dict[str, LoadProfile] = {}
    for model, entry in _table(data, "profiles", bad).items():
        label = f"profiles.{json.dumps(model)}"
        if isinstance(entry, dict):
            profiles[model_key(model)] = _profile_from(entry, label + ".", load, bad)
        else:
            bad.append(label)
    return Settings(
        model_dirs=model_dirs,
        theme=theme,
        recent_models=list(dict.fromkeys(recent))[:MAX_RECENT],
        last_model=None if last_model is None else model_key(last_model),
        load=load,
        sampling=sampling,
        system_prompt=system_prompt,
        gpu_safety_margin_mib=margin,
        profiles=profiles,
        show_thinking=show_thinking,
        context_overflow=overflow,
    )


def _profile_from(
    table: Mapping[str, Any], prefix: str, base: LoadProfile, bad: list[str]
) -> LoadProfile:
    checks: dict[str, Check] = {
        "offload": _offload,
        "n_ctx": _integer(0),
        "kv_cache_type": _kv_type,
        "flash_attn": _boolean,
        "n_cpu_moe": _n_cpu_moe,
    }
    values: dict[str, Any] = {}
    for key, check in checks.items():
        if key in table:
            checked = check(table[key])
            if checked is _MISSING:
                bad.append(prefix + key)
            else:
                values[key] = checked
    return dataclasses.replace(base, **values)


def _table(data: Mapping[str, Any], key: str, bad: list[str]) -> Mapping[str, Any]:
    value = data.get(key, {})
    if isinstance(value, dict):
        return value
    bad.append(key)
    return {}


def _integer(minimum: int) -> Check:
    def check(value: object) -> Any:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        return value if ok else _MISSING

    return check


def _in_range(valid: SamplingRange) -> Check:
    """A TOML number within ``valid``; a whole-number setting takes no float (5.0 included)."""

    def check(value: object) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _MISSING
        if valid.kind is int and not isinstance(value, int):
            return _MISSING
        number = valid.kind(value)
        return number if valid.contains(number) else _MISSING

    return check


def _text(*, empty: bool) -> Check:
    def check(value: object) -> Any:
        return value if isinstance(value, str) and (empty or value.strip()) else _MISSING

    return check


def _strings(value: object) -> Any:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    return _MISSING


def _stop_strings(value: object) -> Any:
    """Stop strings: an empty one would end every reply at its first character."""
    strings = _strings(value)
    if strings is _MISSING or any(not item for item in strings):
        return _MISSING
    return strings


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: object) -> Any:
        return value if value in choices else _MISSING

    return check


def _boolean(value: object) -> Any:
    return value if isinstance(value, bool) else _MISSING


def _offload(value: object) -> Any:
    if value in ("auto", "all"):
        return value
    return _integer(0)(value)


def _n_cpu_moe(value: object) -> Any:
    return value if value == "all" else _integer(0)(value)


def _kv_type(value: object) -> Any:
    return value if value in KV_CACHE_TYPES else _MISSING


# --- writing -------------------------------------------------------------------------------------


def _values(settings: Settings) -> dict[str, Any]:
    """Settings as TOML-ready nested dicts; None means "no key"."""

    profile = dataclasses.asdict
    sampling = dataclasses.asdict(settings.sampling)
    sampling["stop"] = list(settings.sampling.stop)
    return {
        "theme": settings.theme,
        "model_dirs": list(settings.model_dirs),
        "recent_models": list(settings.recent_models),
        "last_model": settings.last_model,
        "system_prompt": settings.system_prompt,
        "gpu_safety_margin_mib": settings.gpu_safety_margin_mib,
        "show_thinking": settings.show_thinking,
        "load": profile(settings.load),
        "chat": {"context_overflow": settings.context_overflow},
        "sampling": sampling,
        "profiles": {model: profile(p) for model, p in settings.profiles.items()},
    }


def _new_document() -> tomlkit.TOMLDocument:
    doc = tomlkit.document()
    for line in _HEADER:
        doc.add(tomlkit.comment(line))
    doc.add(tomlkit.nl())
    return doc


def _one_line(text: str) -> str:
    return " ".join(text.split())
