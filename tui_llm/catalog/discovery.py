"""Find GGUF models already on this machine: the user's folders, Hugging Face, LM Studio, Ollama.

`iter_local_models` yields one `LocalModel` at a time so the UI can stream results from a worker
thread. A file that cannot be read is yielded with its one-line error rather than hidden. Walks are
bounded (depth, entries), never loop through symlinks, and list each file once however it is
reached. Split models are listed once, by their first shard.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from tui_llm import paths
from tui_llm.catalog.gguf_reader import GGUFError
from tui_llm.catalog.metadata import ModelInfo, read_model_info

log = logging.getLogger(__name__)

ModelSource = Literal["folder", "huggingface", "lmstudio", "ollama"]

MAX_DEPTH = 6
MAX_ENTRIES_PER_ROOT = 200_000
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_DEFAULT_REGISTRY = "registry.ollama.ai"

_SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.I)
_DIGEST = re.compile(r"^sha256[:-](?P<hex>[0-9a-f]{64})$")


@dataclass(frozen=True)
class LocalModel:
    """A GGUF file found on disk.

    `path` is what to load (for Hugging Face, the snapshot path, so a split model's shards are
    found beside it). `info` is None exactly when `error` says why the file could not be read.
    """

    path: Path
    source: ModelSource
    display_name: str
    info: ModelInfo | None
    error: str | None


@dataclass(frozen=True)
class SearchRoot:
    """A directory searched, and how its files are named."""

    source: ModelSource
    path: Path


def search_roots(
    dirs: Sequence[str | os.PathLike[str]] | None = None,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> list[SearchRoot]:
    """The existing directories `iter_local_models` searches, in order (for "searched in ...")."""
    system_wide = home is None
    home = Path.home() if home is None else home
    env = os.environ if env is None else env
    user_dirs = [paths.default_models_dir()] if dirs is None else [Path(d) for d in dirs]
    special = [SearchRoot("huggingface", hf_hub_cache(home, env))]
    special += [SearchRoot("lmstudio", d) for d in lmstudio_model_dirs(home)]
    special += [SearchRoot("ollama", d) for d in ollama_model_dirs(home, env, system_wide)]
    folders = [SearchRoot("folder", Path(d).expanduser()) for d in user_dirs]
    # A user folder that is one of the special ones is searched as that, so names stay useful.
    special_keys = {os.path.realpath(root.path) for root in special}
    folders = [r for r in folders if os.path.realpath(r.path) not in special_keys]
    roots: list[SearchRoot] = []
    seen: set[str] = set()
    for root in folders + special:
        key = os.path.realpath(root.path)
        if key not in seen and root.path.is_dir():
            seen.add(key)
            roots.append(root)
    return roots


def iter_local_models(
    dirs: Sequence[str | os.PathLike[str]] | None = None,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    read_info: bool = True,
) -> Iterator[LocalModel]:
    """Yield every GGUF model found, one at a time (stop early by closing the generator).

    `dirs` are the user's model folders (None: the default models folder); `home` and `env` stand
    in for the user's home and environment (tests); with `home` given, system-wide stores (the
    Linux Ollama service's) are left out. `read_info=False` skips reading headers.
    """
    roots = search_roots(dirs, home, env)
    special = {os.path.realpath(r.path) for r in roots if r.source != "folder"}
    seen: set[str] = set()
    for root in roots:
        if root.source == "folder":
            found = _scan_folder(root.path, special, read_info)
        elif root.source == "huggingface":
            found = _scan_hf_cache(root.path, read_info)
        elif root.source == "lmstudio":
            found = _scan_lmstudio(root.path, read_info)
        else:
            found = _scan_ollama(root.path, read_info)
        for model in found:
            key = os.path.realpath(model.path)
            if key not in seen:
                seen.add(key)
                yield model


def hf_hub_cache(home: Path, env: Mapping[str, str]) -> Path:
    """The Hugging Face hub cache, resolved as huggingface_hub does."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(env[var]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    cache = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else None
    return (cache or home / ".cache") / "huggingface" / "hub"


def lmstudio_model_dirs(home: Path) -> list[Path]:
    """LM Studio's model folders: its home's `models` (or settings' downloadsFolder), old cache."""
    homes: list[Path] = []
    try:
        pointer = (home / ".lmstudio-home-pointer").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        pointer = ""
    if pointer:
        homes.append(Path(pointer.splitlines()[0].strip()).expanduser())
    homes += [home / ".lmstudio", home / ".cache" / "lm-studio"]
    found: list[Path] = []
    for lms_home in homes:
        downloads = _json_str(lms_home / "settings.json", "downloadsFolder")
        if downloads:
            found.append(Path(downloads).expanduser())
        found.append(lms_home / "models")
    return found


def ollama_model_dirs(home: Path, env: Mapping[str, str], system_wide: bool = True) -> list[Path]:
    """Ollama's models: OLLAMA_MODELS, else the user's and (system_wide) the service's."""
    if env.get("OLLAMA_MODELS"):
        return [Path(env["OLLAMA_MODELS"]).expanduser()]
    found = [home / ".ollama" / "models"]
    if system_wide:
        found.append(Path("/usr/share/ollama/.ollama/models"))
    return found


def _scan_folder(root: Path, skip: set[str], read_info: bool) -> Iterator[LocalModel]:
    """Every *.gguf under a user folder, named by its path relative to the folder."""
    for file in _walk_gguf(root, skip):
        yield _model(file, "folder", _relative_name(file, root), read_info)


def _scan_lmstudio(root: Path, read_info: bool) -> Iterator[LocalModel]:
    """LM Studio keeps PUBLISHER/REPO/FILE.gguf; the name is that relative path."""
    for file in _walk_gguf(root, set()):
        yield _model(file, "lmstudio", _relative_name(file, root), read_info)


def _scan_hf_cache(root: Path, read_info: bool) -> Iterator[LocalModel]:
    """Files in models--ORG--NAME/snapshots/REVISION/..., named ORG/NAME/FILE.

    Only the snapshot links are followed, so blobs still downloading (`*.incomplete`, no link
    yet) are never seen; the caller drops a blob that several revisions link to.
    """
    for repo_dir in _sorted_dirs(root):
        if not repo_dir.name.startswith("models--"):
            continue
        repo_id = repo_dir.name[len("models--") :].replace("--", "/", 1)
        for snapshot in _sorted_dirs(repo_dir / "snapshots"):
            for file in _walk_gguf(snapshot, set()):
                name = f"{repo_id}/{file.relative_to(snapshot).as_posix()}"
                yield _model(file, "huggingface", name, read_info)


def _scan_ollama(root: Path, read_info: bool) -> Iterator[LocalModel]:
    """Blobs named by manifests: manifests/REGISTRY/NAMESPACE/NAME/TAG -> blobs/sha256-HEX.

    Several tags of one blob are listed once, as "name:tag, name:other".
    """
    manifests = root / "manifests"
    names_by_blob: dict[Path, list[str]] = {}
    for manifest in _walk_files(manifests, MAX_DEPTH):
        name = _ollama_name(manifest.relative_to(manifests).parts)
        try:
            digest = _ollama_model_digest(manifest)
        except (OSError, ValueError) as err:
            yield LocalModel(manifest, "ollama", name, None, _one_line(f"bad manifest: {err}"))
            continue
        if digest is None:  # not a GGUF model (e.g. an embedding of another kind, a projector)
            continue
        match = _DIGEST.match(digest)
        if match is None:
            yield LocalModel(manifest, "ollama", name, None, f"bad layer digest {digest!r}")
            continue
        blob = root / "blobs" / f"sha256-{match['hex']}"
        if not blob.exists() and (root / "blobs" / f"sha256:{match['hex']}").exists():
            blob = root / "blobs" / f"sha256:{match['hex']}"
        names_by_blob.setdefault(blob, []).append(name)
    for blob, names in names_by_blob.items():
        display = ", ".join(sorted(names))
        if not blob.is_file():
            yield LocalModel(blob, "ollama", display, None, f"blob {blob.name} is missing")
        else:
            yield _model(blob, "ollama", display, read_info)


def _ollama_model_digest(manifest: Path) -> str | None:
    """The digest of the manifest's model layer, or None when it has none."""
    if manifest.stat().st_size > 1 << 20:
        raise ValueError("manifest larger than 1 MiB")
    data = json.loads(manifest.read_text(encoding="utf-8"))
    layers = data.get("layers") if isinstance(data, dict) else None
    if not isinstance(layers, list):
        raise ValueError("no layers list")
    for layer in layers:
        if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_LAYER:
            digest = layer.get("digest")
            if not isinstance(digest, str):
                raise ValueError("model layer without a digest")
            return digest
    return None


def _ollama_name(parts: tuple[str, ...]) -> str:
    """How `ollama list` names a manifest path: library models lose registry and namespace."""
    if len(parts) < 2:
        return "/".join(parts)
    *repo, tag = parts
    if len(repo) >= 3 and repo[0] == OLLAMA_DEFAULT_REGISTRY:
        repo = repo[2:] if repo[1] == "library" else repo[1:]
    return f"{'/'.join(repo)}:{tag}"


def _model(file: Path, source: ModelSource, name: str, read_info: bool) -> LocalModel:
    """Read one file's header; a failure becomes the entry's error, never an exception."""
    if not read_info:
        return LocalModel(file, source, name, None, None)
    try:
        info = read_model_info(file)
    except GGUFError as err:
        return LocalModel(file, source, name, None, str(err))
    except OSError as err:
        reason = err.strerror or str(err)
        return LocalModel(
            file, source, name, None, _one_line(f"{file.name}: cannot read: {reason}")
        )
    except Exception as err:  # a reader bug must not end the scan
        log.exception("reading %s failed", file)
        problem = f"{file.name}: unexpected {type(err).__name__}: {err}"
        return LocalModel(file, source, name, None, _one_line(problem))
    error = None
    if info.architecture == "clip":
        error = "a multimodal projector (mmproj), not a language model"
    return LocalModel(file, source, name, info, error)


def read_local_model(file: Path) -> LocalModel:
    """One model file met outside the scanned folders (opened by path, a recent model), read as
    the scan reads it and named by its file name; a file that cannot be read carries its error."""
    return _model(file, "folder", file.name, read_info=True)


FileId: TypeAlias = "tuple[int, int] | str"
"""Which file a path names: see `file_id`."""


def file_id(path: str | os.PathLike[str]) -> FileId:
    """The file a path names, as `os.path.samefile` compares them: (device, inode).

    Two paths to one file (a symlink, a symlinked folder, a Hugging Face snapshot link and its
    blob) give the same id; a path that cannot be stat'ed gives its normalized absolute path.
    It stats the file: call it off the event loop.
    """
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return os.path.normpath(os.path.abspath(path))
    return (stat.st_dev, stat.st_ino)


def _walk_gguf(root: Path, skip: set[str]) -> Iterator[Path]:
    """*.gguf files under root, first shards only (a later one when the first is missing)."""
    reported_groups: set[tuple[Path, str, str]] = set()
    for file in _walk_files(root, MAX_DEPTH, skip):
        if not file.name.lower().endswith(".gguf"):
            continue
        split = _SPLIT_NAME.match(file.name)
        if split is not None and int(split["no"]) != 1:
            first = file.with_name(f"{split['prefix']}-00001-of-{split['count']}.gguf")
            group = (file.parent, split["prefix"], split["count"])
            if first.exists() or group in reported_groups:
                continue
            reported_groups.add(group)
        yield file


def _walk_files(root: Path, max_depth: int, skip: set[str] | None = None) -> Iterator[Path]:
    """Regular files (or links to them) under root, depth first, in name order.

    Hidden entries are skipped, directories in `skip` (real paths) are not entered, each real
    directory is entered once (no symlink loops), and a walk stops after MAX_ENTRIES_PER_ROOT.
    """
    visited: set[tuple[int, int]] = set()
    entries = 0
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        directory, depth = stack.pop()
        try:
            stat = directory.stat()
            if (stat.st_dev, stat.st_ino) in visited:
                continue
            visited.add((stat.st_dev, stat.st_ino))
            with os.scandir(directory) as scan:
                children = sorted(scan, key=lambda entry: entry.name)
        except OSError as err:
            log.debug("cannot list %s: %s", directory, err)
            continue
        subdirs: list[Path] = []
        for entry in children:
            entries += 1
            if entries > MAX_ENTRIES_PER_ROOT:
                log.warning("stopped searching %s after %d entries", root, MAX_ENTRIES_PER_ROOT)
                return
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    if depth < max_depth and (not skip or os.path.realpath(entry) not in skip):
                        subdirs.append(Path(entry.path))
                elif entry.is_file() or entry.is_symlink():  # a dangling link is listed, failing
                    yield Path(entry.path)
            except OSError:
                continue
        stack.extend((subdir, depth + 1) for subdir in reversed(subdirs))


def _sorted_dirs(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.is_dir())
    except OSError:
        return []


def _relative_name(file: Path, root: Path) -> str:
    try:
        return file.relative_to(root).as_posix()
    except ValueError:
        return file.name


def _json_str(path: Path, key: str) -> str | None:
    """One string value from a small JSON object file, or None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def _one_line(text: str) -> str:
    return " ".join(text.split())
