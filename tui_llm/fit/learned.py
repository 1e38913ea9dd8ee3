"""Learn from real loads: keep llama.cpp's reported buffers beside the estimate, and correct.

After each load the buffers llama.cpp reported are stored with what the estimate said for the
same level, keyed by the model file (path, size, modification time) and the settings that change
memory. The next estimate for that model is multiplied, kind by kind (weights, KV, compute,
output), by reported/estimated: exact settings first, else the same model under other settings
(weights only, since they do not depend on the settings).

The store is one JSON file in the user state directory, written atomically (temporary file, then
``os.replace``). A file that cannot be read is set aside with a warning and never crashes a load.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tui_llm import paths
from tui_llm.catalog.metadata import human_bytes
from tui_llm.engine.logparse import is_host_buffer
from tui_llm.engine.protocol import BufferSize, LoadedEvent, LoadSettings
from tui_llm.fit.estimate import Estimate, EstimateSettings, LevelEstimate, MemorySplit

log = logging.getLogger(__name__)

FILE_NAME = "fit-learned.json"
VERSION = 1
KINDS = ("weights", "kv", "compute", "output")
_MAX_ENTRIES = 200
_BUFFER_KIND = {"model": "weights", "kv": "kv", "compute": "compute", "output": "output"}
# a ratio outside this range is a different situation (another build), not a correction
_SANE_RATIO = (0.5, 2.0)


def learned_path() -> Path:
    """Where the learned corrections live."""
    return paths.state_dir() / FILE_NAME


def model_identity(model_path: str | os.PathLike[str]) -> str:
    """The model file as path, size and modification time (a changed file starts over)."""
    path = Path(model_path).resolve()
    stat = path.stat()
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def settings_key(settings: EstimateSettings | LoadSettings) -> str:
    """The settings that change memory, as a stable string."""
    if isinstance(settings, LoadSettings):
        settings = EstimateSettings.from_load_settings(settings)
    return (
        f"ctx={settings.n_ctx};batch={settings.n_batch};ubatch={settings.n_ubatch};"
        f"k={settings.type_k};v={settings.type_v};fa={int(settings.flash_attn)};"
        f"kqv={int(settings.offload_kqv)};mmap={int(settings.use_mmap)}"
    )


@dataclass(frozen=True)
class Correction:
    """Multipliers for the next estimate; 1.0 everywhere when nothing was learned."""

    weights: float = 1.0
    kv: float = 1.0
    compute: float = 1.0
    output: float = 1.0
    samples: int = 0

    def ratios(self) -> dict[str, float]:
        return {kind: getattr(self, kind) for kind in KINDS}

    def apply(self, level: LevelEstimate) -> LevelEstimate:
        """The level's estimate with every kind multiplied by its ratio."""
        if self.samples == 0:
            return level
        ratios = self.ratios()
        return LevelEstimate(
            level.offload_layers, level.gpu.scaled(ratios), level.cpu.scaled(ratios)
        )


NO_CORRECTION = Correction()


@dataclass(frozen=True)
class LoadComparison:
    """One load: llama.cpp's bytes and the estimate's, per kind and side."""

    offload_layers: int
    reported_gpu: MemorySplit
    reported_cpu: MemorySplit
    estimated_gpu: MemorySplit
    estimated_cpu: MemorySplit

    def ratios(self) -> dict[str, float]:
        """reported / estimated per kind over both sides (kinds absent on both are left out)."""
        out = {}
        for kind in KINDS:
            estimated = getattr(self.estimated_gpu, kind) + getattr(self.estimated_cpu, kind)
            reported = getattr(self.reported_gpu, kind) + getattr(self.reported_cpu, kind)
            if estimated > 0 and reported > 0:
                out[kind] = reported / estimated
        return out

    def summary(self) -> str:
        """One log line: the estimate's error on each side."""

        def side(name: str, reported: MemorySplit, estimated: MemorySplit) -> str:
            if reported.total == 0 and estimated.total == 0:
                return f"{name} 0"
            error = 100.0 * (estimated.total - reported.total) / max(1, reported.total)
            return (
                f"{name} {human_bytes(reported.total)} reported, "
                f"{human_bytes(estimated.total)} estimated ({error:+.1f}%)"
            )

        return (
            f"memory at {self.offload_layers} layers: "
            f"{side('GPU', self.reported_gpu, self.estimated_gpu)}; "
            f"{side('CPU', self.reported_cpu, self.estimated_cpu)}"
        )


def split_reported(buffers: tuple[BufferSize, ...]) -> tuple[MemorySplit, MemorySplit]:
    """llama.cpp's reported buffers as (GPU, CPU) splits by kind."""
    sides: dict[bool, dict[str, int]] = {
        True: dict.fromkeys(KINDS, 0),
        False: dict.fromkeys(KINDS, 0),
    }
    for buf in buffers:
        kind = _BUFFER_KIND.get(buf.kind)
        if kind is not None:
            sides[is_host_buffer(buf.device)][kind] += buf.size_bytes
    return MemorySplit(**sides[False]), MemorySplit(**sides[True])


def compare(loaded: LoadedEvent, estimate: Estimate) -> LoadComparison:
    """The loaded model's buffers beside the estimate for the level it loaded at."""
    level = estimate.level(loaded.offloaded_layers)
    gpu, cpu = split_reported(loaded.buffers)
    return LoadComparison(loaded.offloaded_layers, gpu, cpu, level.gpu, level.cpu)


# ---- the store -----------------------------------------------------------------------------


def _read(path: Path) -> dict[str, object]:
    """The store's entries; a missing file is empty, an unreadable one is set aside."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("cannot read %s (%s); learned memory corrections are ignored", path, exc)
        return {}
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError("not a tui-llm learned-corrections file of this version")
        entries = data.get("entries")
        if not isinstance(entries, dict):
            raise ValueError("no entries")
    except ValueError as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        log.warning(
            "%s is unreadable (%s); learned memory corrections start over, the old file is kept "
            "as %s",
            path,
            exc,
            aside.name,
        )
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        return {}
    return entries


def _write(path: Path, entries: Mapping[str, object]) -> None:
    """Write the store atomically: a temporary file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": VERSION, "entries": entries}, indent=1, sort_keys=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def _split_json(split: MemorySplit) -> dict[str, int]:
    return {kind: getattr(split, kind) for kind in KINDS}


def record_load(
    loaded: LoadedEvent, estimate: Estimate, *, store: Path | None = None
) -> LoadComparison:
    """Keep this load's reported buffers beside the estimate, and return the comparison.

    Never raises for the store: a write that fails is logged and the comparison still returned.
    """
    comparison = compare(loaded, estimate)
    path = store or learned_path()
    try:
        identity = model_identity(loaded.settings.model_path)
    except OSError:
        return comparison
    key = f"{identity}#{settings_key(estimate.settings)}"
    entry = {
        "model": identity,
        "settings": settings_key(estimate.settings),
        "device": estimate.device.name,
        "offload_layers": comparison.offload_layers,
        "ratios": comparison.ratios(),
        "reported": {
            "gpu": _split_json(comparison.reported_gpu),
            "cpu": _split_json(comparison.reported_cpu),
        },
        "estimated": {
            "gpu": _split_json(comparison.estimated_gpu),
            "cpu": _split_json(comparison.estimated_cpu),
        },
        "recorded_at": time.time(),
    }
    try:
        entries = dict(_read(path))
        entries[key] = entry
        if len(entries) > _MAX_ENTRIES:
            by_age = sorted(entries, key=lambda k: _recorded_at(entries[k]))
            for old in by_age[: len(entries) - _MAX_ENTRIES]:
                del entries[old]
        _write(path, entries)
    except OSError as exc:
        log.warning("cannot save learned memory correction to %s: %s", path, exc)
    log.info("%s", comparison.summary())
    return comparison


def _recorded_at(entry: object) -> float:
    value = entry.get("recorded_at") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, (int, float)) else 0.0


def _ratios_of(entry: object) -> dict[str, float]:
    if not isinstance(entry, dict):
        return {}
    ratios = entry.get("ratios")
    if not isinstance(ratios, dict):
        return {}
    low, high = _SANE_RATIO
    return {
        kind: float(value)
        for kind, value in ratios.items()
        if kind in KINDS and isinstance(value, (int, float)) and low <= value <= high
    }


def correction_for(
    model_path: str | os.PathLike[str],
    settings: EstimateSettings | LoadSettings,
    *,
    store: Path | None = None,
) -> Correction:
    """Ratios to multiply the next estimate by, from earlier loads of this model file."""
    try:
        identity = model_identity(model_path)
    except OSError:
        return NO_CORRECTION
    entries = _read(store or learned_path())
    exact = entries.get(f"{identity}#{settings_key(settings)}")
    if exact is not None:
        ratios = _ratios_of(exact)
        return Correction(**ratios, samples=1) if ratios else NO_CORRECTION
    same_model = [e for e in entries.values() if isinstance(e, dict) and e.get("model") == identity]
    if not same_model:
        return NO_CORRECTION
    latest = max(same_model, key=_recorded_at)
    weights = _ratios_of(latest).get("weights")
    return Correction(weights=weights, samples=1) if weights is not None else NO_CORRECTION
