"""The Hugging Face Hub: search GGUF repositories, list their quantizations, pick one that fits.

Everything here blocks on the network (with the timeout of `HubSettings`); the UI runs it in a
thread worker and drops stale answers. The requests are huggingface_hub's (`HfApi.list_models`
with the gguf filter, `HfApi.model_info` with file sizes), run through `hub_session.hub_call`
for the settings of the moment and one error type. Downloads are in `hub_download` and
`hub_queue`, the cache listing in `hub_cache`. Settings are read from the environment on each
call, so HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE and HF_TOKEN changes take effect without a
restart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

from tui_llm.catalog.hub_client import HubError, HubSettings, hub_api
from tui_llm.catalog.metadata import human_bytes

if TYPE_CHECKING:
    from huggingface_hub.hf_api import ExpandModelProperty_T, ModelInfo

__all__ = [
    "GPU_HEADROOM",
    "FitBadge",
    "HubError",
    "HubModel",
    "HubSettings",
    "QuantOption",
    "RatedOption",
    "RepoFiles",
    "check_repo_id",
    "find_option",
    "group_gguf_files",
    "list_repo_ggufs",
    "parse_repo_target",
    "pick_best_option",
    "quantization_from_name",
    "rate_options",
    "search_models",
    "size_fit_badge",
]

# A model needs room beyond its weights (KV cache, compute buffers): plan for 20 % more.
GPU_HEADROOM = 1.2
SEARCH_EXPAND: tuple[ExpandModelProperty_T, ...] = (
    "downloads",
    "likes",
    "lastModified",
    "gguf",
    "gated",
)

# llama.cpp's split naming (llama_split_path): PREFIX-00001-of-00003.gguf.
_SHARD_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_QUANT_NAME = re.compile(
    r"(?<![A-Za-z0-9])(I?Q[1-8](?:_[A-Za-z0-9]+)*|TQ[12]_0|MXFP4(?:_MOE)?|BF16|F16|F32)"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")

FitBadge = Callable[[int, Mapping[str, object]], str]


@dataclass(frozen=True)
class HubModel:
    """One search result: a GGUF repository with what the Hub says about it."""

    repo_id: str
    downloads: int
    likes: int
    last_modified: datetime | None
    parameter_count: int | None
    architecture: str | None
    context_length: int | None
    gated: bool


@dataclass(frozen=True)
class QuantOption:
    """One downloadable model in a repository: a single .gguf file or all shards of a split one.

    `revision` is what was asked for (a branch such as "main"), `commit` what it pointed at.
    """

    repo_id: str
    revision: str
    commit: str
    name: str
    quantization: str
    filenames: tuple[str, ...]
    size_bytes: int | None

    @property
    def is_split(self) -> bool:
        return len(self.filenames) > 1

    @property
    def size_text(self) -> str:
        return human_bytes(self.size_bytes) if self.size_bytes is not None else "size unknown"


@dataclass(frozen=True)
class RepoFiles:
    """A repository's GGUF models at one commit, smallest first, with the Hub's GGUF metadata."""

    repo_id: str
    commit: str
    options: tuple[QuantOption, ...]
    gguf: Mapping[str, object]
    gated: bool


@dataclass(frozen=True)
class RatedOption:
    """An option with its fit badge; `best` marks the one `pick_best_option` chose."""

    option: QuantOption
    badge: str
    best: bool


def check_repo_id(repo_id: str) -> str:
    """`repo_id` if it is a valid repository name (ORG/NAME), else HubError("not_found")."""
    if not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id:
        raise HubError("not_found", f"not a Hugging Face repository name: {repo_id!r}")
    return repo_id


def parse_repo_target(text: str) -> tuple[str, str | None]:
    """Split ``REPO[:QUANT|:FILE]`` into the repository and the optional selector."""
    repo_id, _, selector = text.strip().partition(":")
    return check_repo_id(repo_id), (selector.strip() or None)


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _gguf_fields(gguf: object) -> Mapping[str, object]:
    return MappingProxyType(dict(gguf)) if isinstance(gguf, dict) else MappingProxyType({})


def _is_gated(gated: object) -> bool:
    """The Hub says False, "auto" or "manual"; older answers may say "false" or leave it out."""
    return gated not in (None, False, "false")


def _hub_model(info: ModelInfo) -> HubModel | None:
    repo_id = _as_str(info.id)
    if repo_id is None:
        return None
    gguf = _gguf_fields(info.gguf)
    last_modified = info.last_modified
    return HubModel(
        repo_id=repo_id,
        downloads=_as_int(info.downloads) or 0,
        likes=_as_int(info.likes) or 0,
        last_modified=last_modified if isinstance(last_modified, datetime) else None,
        parameter_count=_as_int(gguf.get("total")),
        architecture=_as_str(gguf.get("architecture")),
        context_length=_as_int(gguf.get("context_length")),
        gated=_is_gated(info.gated),
    )


def search_models(
    query: str, *, limit: int = 30, settings: HubSettings | None = None
) -> list[HubModel]:
    """GGUF repositories matching `query`, most downloaded first (one request, no retries).

    `HfApi.list_models` with the gguf filter, sorted by downloads, with the Hub's GGUF facts.
    """
    hub = settings or HubSettings.from_env()
    hub.require_online("search the Hugging Face Hub")
    from tui_llm.catalog.hub_session import hub_call  # imports the library: on first use

    with hub_call(hub, what="search"):
        found = list(
            hub_api(hub).list_models(
                search=query.strip() or None,
                filter="gguf",
                sort="downloads",
                limit=max(1, limit),
                expand=list(SEARCH_EXPAND),
            )
        )
    models = [_hub_model(info) for info in found]
    return [model for model in models if model is not None]


def quantization_from_name(filename: str) -> str:
    """The quantization a file name states (``model-Q4_K_M.gguf`` -> ``Q4_K_M``), else ``?``."""
    parts = filename.split("/")
    for part in (parts[-1], *reversed(parts[:-1])):
        stem = part[: -len(".gguf")] if part.lower().endswith(".gguf") else part
        shard = _SHARD_NAME.match(f"{stem}.gguf")
        found = _QUANT_NAME.findall(shard["prefix"] if shard else stem)
        if found:
            return str(found[-1]).upper()
    return "?"


def group_gguf_files(
    repo_id: str, revision: str, commit: str, sizes: Mapping[str, int | None]
) -> tuple[QuantOption, ...]:
    """Group a repository's files into models: shards summed, projectors and partial sets left out.

    `sizes` maps each file path in the repository to its size in bytes (None if unknown).
    """
    singles: list[QuantOption] = []
    split_sets: dict[str, dict[int, str]] = {}
    split_counts: dict[str, int] = {}
    for path in sizes:
        basename = path.rsplit("/", 1)[-1]
        if not basename.lower().endswith(".gguf") or "mmproj" in basename.lower():
            continue
        shard = _SHARD_NAME.match(basename)
        if shard is None:
            singles.append(
                QuantOption(
                    repo_id=repo_id,
                    revision=revision,
                    commit=commit,
                    name=basename[: -len(".gguf")],
                    quantization=quantization_from_name(path),
                    filenames=(path,),
                    size_bytes=sizes[path],
                )
            )
            continue
        key = f"{path[: len(path) - len(basename)]}{shard['prefix']}"
        split_sets.setdefault(key, {})[int(shard["no"])] = path
        split_counts[key] = int(shard["count"])
    options = singles
    for key, shards in split_sets.items():
        count = split_counts[key]
        if sorted(shards) != list(range(1, count + 1)):
            continue
        filenames = tuple(shards[number] for number in range(1, count + 1))
        shard_sizes = [sizes[name] for name in filenames]
        options.append(
            QuantOption(
                repo_id=repo_id,
                revision=revision,
                commit=commit,
                name=key.rsplit("/", 1)[-1],
                quantization=quantization_from_name(filenames[0]),
                filenames=filenames,
                size_bytes=None if None in shard_sizes else sum(s or 0 for s in shard_sizes),
            )
        )
    big = 1 << 62
    return tuple(sorted(options, key=lambda o: (o.size_bytes or big, o.name)))


def list_repo_ggufs(
    repo_id: str, *, revision: str = "main", settings: HubSettings | None = None
) -> RepoFiles:
    """A repository's GGUF models with sizes: `HfApi.model_info` with file metadata.

    One request: with `files_metadata` the Hub lists every file with its size (where
    `get_paths_info` would be a second round trip for the same sizes).
    """
    hub = settings or HubSettings.from_env()
    check_repo_id(repo_id)
    hub.require_online(f"list the files of {repo_id}")
    from tui_llm.catalog.hub_session import hub_call  # imports the library: on first use

    with hub_call(hub, what=repo_id, repo_id=repo_id):
        info = hub_api(hub).model_info(repo_id, revision=revision, files_metadata=True)
    commit = _as_str(info.sha) or revision
    sizes: dict[str, int | None] = {}
    for sibling in info.siblings or []:
        size = _as_int(sibling.size)
        if size is None and sibling.lfs is not None:
            size = _as_int(sibling.lfs.size)
        sizes[sibling.rfilename] = size
    return RepoFiles(
        repo_id=repo_id,
        commit=commit,
        options=group_gguf_files(repo_id, revision, commit, sizes),
        gguf=_gguf_fields(info.gguf),
        gated=_is_gated(info.gated),
    )


def _fits(size_bytes: int | None, free_bytes: int | None) -> bool:
    return (
        size_bytes is not None
        and free_bytes is not None
        and size_bytes * GPU_HEADROOM <= free_bytes
    )


def pick_best_option(
    options: Iterable[QuantOption], *, free_vram_bytes: int | None, free_ram_bytes: int | None
) -> QuantOption | None:
    """The largest model whose size * 1.2 fits free GPU memory, else the largest that fits RAM.

    None when nothing fits (or no size is known). The memory estimate can replace this later.
    """
    candidates = list(options)
    for free_bytes in (free_vram_bytes, free_ram_bytes):
        fitting = [o for o in candidates if _fits(o.size_bytes, free_bytes)]
        if fitting:
            return max(fitting, key=lambda o: (o.size_bytes or 0, o.name))
    return None


def size_fit_badge(free_vram_bytes: int | None, free_ram_bytes: int | None) -> FitBadge:
    """A fit badge from file size alone: "fits GPU", "fits RAM", "too large" or "size unknown"."""

    def badge(size_bytes: int, metadata: Mapping[str, object]) -> str:
        if size_bytes <= 0:
            return "size unknown"
        if _fits(size_bytes, free_vram_bytes):
            return "fits GPU"
        if _fits(size_bytes, free_ram_bytes):
            return "fits RAM"
        return "too large"

    return badge


def rate_options(
    repo: RepoFiles,
    *,
    free_vram_bytes: int | None,
    free_ram_bytes: int | None,
    fit_badge: FitBadge | None = None,
) -> list[RatedOption]:
    """Each option with a fit badge (from `fit_badge`, else by size) and the best one marked.

    `fit_badge(size_bytes, metadata)` gets the Hub's GGUF metadata of the repository plus
    "quantization" and "filenames", so the memory estimate can plug in before any download.
    """
    badge = fit_badge or size_fit_badge(free_vram_bytes, free_ram_bytes)
    best = pick_best_option(
        repo.options, free_vram_bytes=free_vram_bytes, free_ram_bytes=free_ram_bytes
    )
    rated = []
    for option in repo.options:
        metadata = MappingProxyType(
            {**repo.gguf, "quantization": option.quantization, "filenames": option.filenames}
        )
        rated.append(RatedOption(option, badge(option.size_bytes or 0, metadata), option == best))
    return rated


def find_option(repo: RepoFiles, selector: str) -> QuantOption:
    """The option a user named: a file name (any shard, folder optional) or a quantization."""
    wanted = selector.strip()
    if wanted.lower().endswith(".gguf"):
        for option in repo.options:
            for filename in option.filenames:
                if wanted in (filename, filename.rsplit("/", 1)[-1]):
                    return option
        raise HubError("not_found", f"{repo.repo_id} has no model file {wanted}")
    matches = [o for o in repo.options if o.quantization.upper() == wanted.upper()]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(f"{o.filenames[0]}" for o in matches)
        raise HubError("not_found", f"{repo.repo_id} has several {wanted} files; name one: {names}")
    offered = ", ".join(sorted({o.quantization for o in repo.options})) or "no GGUF files"
    raise HubError("not_found", f"{repo.repo_id} has no {wanted} quantization (it has {offered})")
