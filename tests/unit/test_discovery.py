"""Tests for local model discovery on fake Hugging Face, LM Studio and Ollama layouts."""

from __future__ import annotations

import inspect
import json
import os
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

from tui_llm import paths
from tui_llm.catalog.discovery import (
    LocalModel,
    SearchRoot,
    file_id,
    iter_local_models,
    read_local_model,
    search_roots,
)
from tui_llm.catalog.generate import write_llama_gguf

SHA_A = "a" * 64
SHA_B = "b" * 64


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real model that every layout copies."""
    path = tmp_path_factory.mktemp("src") / "tiny.gguf"
    return write_llama_gguf(path, n_layer=1, n_embd=8, n_head=2, n_vocab=300, name="Tiny")


def place(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def write_split(directory: Path, stem: str) -> list[Path]:
    """A real two-shard model named as llama.cpp's gguf-split names shards."""
    directory.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(directory / f"{stem}.gguf", "llama", split_max_tensors=1)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    shards = sorted(directory.glob(f"{stem}-*-of-*.gguf"))
    assert len(shards) == 2
    return shards


def by_name(models: list[LocalModel]) -> dict[str, LocalModel]:
    names = [m.display_name for m in models]
    assert len(names) == len(set(names)), f"listed twice: {names}"
    return {m.display_name: m for m in models}


def scan(dirs: list[Path], home: Path, env: dict[str, str] | None = None) -> list[LocalModel]:
    return list(iter_local_models(dirs, home=home, env=env or {}))


def test_user_folder_lists_models_corrupt_files_and_split_models_once(
    tmp_path: Path, gguf_file: Path
) -> None:
    folder = tmp_path / "models"
    place(gguf_file, folder / "tiny.gguf")
    place(gguf_file, folder / "nested" / "deeper" / "Tiny-Upper.GGUF")
    (folder / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(40))
    (folder / "notes.txt").write_text("not a model")
    (folder / "partial.gguf.incomplete").write_bytes(gguf_file.read_bytes()[:100])
    (folder / ".hidden.gguf").write_bytes(b"AppleDouble")
    write_split(folder / "split", "big")

    models = by_name(scan([folder], tmp_path / "home"))

    assert set(models) == {
        "tiny.gguf",
        "nested/deeper/Tiny-Upper.GGUF",
        "broken.gguf",
        "split/big-00001-of-00002.gguf",
    }
    tiny = models["tiny.gguf"]
    assert (tiny.source, tiny.error, tiny.path) == ("folder", None, folder / "tiny.gguf")
    assert tiny.info is not None and tiny.info.name == "Tiny" and tiny.info.n_layer == 1
    broken = models["broken.gguf"]
    assert broken.info is None
    assert broken.error is not None and broken.error.startswith("broken.gguf: ")
    assert "\n" not in broken.error
    split = models["split/big-00001-of-00002.gguf"]
    assert split.error is None and split.info is not None and len(split.info.shards) == 2


def test_a_split_model_missing_its_first_shard_is_listed_with_the_error(
    tmp_path: Path,
) -> None:
    first, second = write_split(tmp_path / "models", "big")
    first.unlink()

    (model,) = scan([tmp_path / "models"], tmp_path / "home")

    assert model.path == second
    assert model.info is None and model.error is not None and "missing" in model.error


def test_symlink_loops_end_and_each_file_is_listed_once(tmp_path: Path, gguf_file: Path) -> None:
    folder = tmp_path / "models"
    place(gguf_file, folder / "a" / "tiny.gguf")
    (folder / "a" / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "alias.gguf").symlink_to(folder / "a" / "tiny.gguf")
    (folder / "dangling.gguf").symlink_to(folder / "gone.gguf")

    models = by_name(scan([folder, folder / "a"], tmp_path / "home"))

    # The real file is reached as a/tiny.gguf, alias.gguf, a/loop/a/tiny.gguf...: listed once.
    assert len(models) == 2
    tiny = [m for m in models.values() if m.error is None]
    assert [m.path.resolve() for m in tiny] == [(folder / "a" / "tiny.gguf").resolve()]
    assert models["dangling.gguf"].error is not None
    assert "cannot read" in models["dangling.gguf"].error


def test_depth_is_bounded(tmp_path: Path, gguf_file: Path) -> None:
    folder = tmp_path / "models"
    place(gguf_file, folder / "1" / "2" / "3" / "4" / "5" / "6" / "shallow.gguf")
    place(gguf_file, folder / "1" / "2" / "3" / "4" / "5" / "6" / "7" / "deep.gguf")

    names = [m.display_name for m in scan([folder], tmp_path / "home")]

    assert names == ["1/2/3/4/5/6/shallow.gguf"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_listed_with_its_error(tmp_path: Path, gguf_file: Path) -> None:
    locked = place(gguf_file, tmp_path / "models" / "locked.gguf")
    locked.chmod(0)

    (model,) = scan([tmp_path / "models"], tmp_path / "home")

    assert model.error == "locked.gguf: cannot read (Permission denied)"


def make_hf_cache(hub: Path, gguf_file: Path) -> None:
    """A repo with two revisions sharing a blob, a file in a subfolder, a download going on."""
    repo = hub / "models--TheOrg--Tiny-GGUF"
    place(gguf_file, repo / "blobs" / SHA_A)
    place(gguf_file, repo / "blobs" / SHA_B)
    (repo / "blobs" / f"{'c' * 64}.incomplete").write_bytes(gguf_file.read_bytes()[:64])
    for revision in ("rev1", "rev2"):
        snapshot = repo / "snapshots" / revision
        snapshot.mkdir(parents=True)
        (snapshot / "tiny.Q8_0.gguf").symlink_to(Path("../../blobs") / SHA_A)
    (repo / "snapshots" / "rev2" / "Q4").mkdir()
    (repo / "snapshots" / "rev2" / "Q4" / "tiny.Q4.gguf").symlink_to(Path("../../../blobs") / SHA_B)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("rev2")
    (hub / "datasets--x--y" / "snapshots" / "r").mkdir(parents=True)
    place(gguf_file, hub / "datasets--x--y" / "snapshots" / "r" / "data.gguf")


def test_hugging_face_cache_shows_the_repo_and_skips_downloads_in_progress(
    tmp_path: Path, gguf_file: Path
) -> None:
    hub = Path(os.environ["HF_HOME"]) / "hub"  # the autouse fixture's HF_HOME
    make_hf_cache(hub, gguf_file)

    models = by_name(list(iter_local_models([], home=tmp_path / "home")))

    assert set(models) == {"TheOrg/Tiny-GGUF/tiny.Q8_0.gguf", "TheOrg/Tiny-GGUF/Q4/tiny.Q4.gguf"}
    q8 = models["TheOrg/Tiny-GGUF/tiny.Q8_0.gguf"]
    assert q8.source == "huggingface"
    assert q8.path.parent.parent.name == "snapshots"  # the snapshot path, not the blob
    assert q8.path.resolve().name == SHA_A
    assert q8.info is not None and q8.error is None


def test_hf_hub_cache_variable_wins_over_hf_home(tmp_path: Path, gguf_file: Path) -> None:
    make_hf_cache(tmp_path / "elsewhere", gguf_file)
    env = {"HF_HUB_CACHE": str(tmp_path / "elsewhere"), "HF_HOME": str(tmp_path / "nothing")}

    models = scan([], tmp_path / "home", env)

    assert {m.source for m in models} == {"huggingface"}
    assert len(models) == 2


def test_hf_cache_defaults_to_the_home_cache(tmp_path: Path, gguf_file: Path) -> None:
    home = tmp_path / "home"
    make_hf_cache(home / ".cache" / "huggingface" / "hub", gguf_file)
    assert len(scan([], home)) == 2


def test_lm_studio_folders_including_the_home_pointer(tmp_path: Path, gguf_file: Path) -> None:
    home = tmp_path / "home"
    place(gguf_file, home / ".lmstudio" / "models" / "lmstudio-community" / "Tiny" / "a.gguf")
    place(gguf_file, home / ".cache" / "lm-studio" / "models" / "old" / "Tiny" / "b.gguf")
    moved = tmp_path / "big-disk" / "lmstudio"
    (home / ".lmstudio-home-pointer").write_text(f"{moved}\n")
    place(gguf_file, moved / "models" / "pub" / "Tiny" / "c.gguf")
    custom = tmp_path / "big-disk" / "custom-models"
    (moved / "settings.json").write_text(json.dumps({"downloadsFolder": str(custom)}))
    place(gguf_file, custom / "pub" / "Tiny" / "d.gguf")

    models = by_name(scan([], home))

    assert set(models) == {
        "lmstudio-community/Tiny/a.gguf",
        "old/Tiny/b.gguf",
        "pub/Tiny/c.gguf",
        "pub/Tiny/d.gguf",
    }
    assert {m.source for m in models.values()} == {"lmstudio"}


def make_ollama(models_dir: Path, gguf_file: Path) -> None:
    """Two tags of one model, a user model, a projector-only manifest, a missing blob, junk."""
    place(gguf_file, models_dir / "blobs" / f"sha256-{SHA_A}")
    place(gguf_file, models_dir / "blobs" / f"sha256-{SHA_B}")
    (models_dir / "blobs" / f"sha256-{'f' * 64}-partial").write_bytes(b"GGUF")

    def manifest(relative: str, layers: list[dict[str, str]]) -> None:
        path = models_dir / "manifests" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))

    def model_layer(sha: str) -> dict[str, str]:
        return {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{sha}"}

    template = {
        "mediaType": "application/vnd.ollama.image.template",
        "digest": "sha256:" + "1" * 64,
    }
    manifest("registry.ollama.ai/library/tiny/latest", [model_layer(SHA_A), template])
    manifest("registry.ollama.ai/library/tiny/1b", [template, model_layer(SHA_A)])
    manifest("registry.ollama.ai/someone/mine/q8", [model_layer(SHA_B)])
    manifest("registry.ollama.ai/library/gone/latest", [model_layer("d" * 64)])
    manifest("registry.ollama.ai/library/templ/latest", [template])
    (models_dir / "manifests" / "registry.ollama.ai" / "library" / "junk").mkdir(parents=True)
    (models_dir / "manifests" / "registry.ollama.ai" / "library" / "junk" / "v1").write_text("{")


def test_ollama_blobs_are_named_as_ollama_names_them(tmp_path: Path, gguf_file: Path) -> None:
    home = tmp_path / "home"
    make_ollama(home / ".ollama" / "models", gguf_file)

    models = by_name(scan([], home))

    assert set(models) == {"tiny:1b, tiny:latest", "someone/mine:q8", "gone:latest", "junk:v1"}
    tiny = models["tiny:1b, tiny:latest"]
    assert tiny.source == "ollama"
    assert tiny.path == home / ".ollama" / "models" / "blobs" / f"sha256-{SHA_A}"
    assert tiny.info is not None and tiny.info.name == "Tiny"
    assert models["gone:latest"].error == f"blob sha256-{'d' * 64} is missing"
    junk_error = models["junk:v1"].error
    assert junk_error is not None and junk_error.startswith("bad manifest:")


def test_ollama_models_variable(tmp_path: Path, gguf_file: Path) -> None:
    make_ollama(tmp_path / "ollama-store", gguf_file)
    models = scan([], tmp_path / "home", {"OLLAMA_MODELS": str(tmp_path / "ollama-store")})
    assert "someone/mine:q8" in by_name(models)


def test_default_folder_and_the_order_of_sources(tmp_path: Path, gguf_file: Path) -> None:
    home = tmp_path / "home"
    place(gguf_file, paths.default_models_dir() / "mine.gguf")
    make_hf_cache(Path(os.environ["HF_HOME"]) / "hub", gguf_file)
    make_ollama(home / ".ollama" / "models", gguf_file)
    place(gguf_file, home / ".lmstudio" / "models" / "p" / "r" / "x.gguf")

    roots = search_roots(home=home)
    assert inspect.isgenerator(iter_local_models(home=home))  # results stream as found
    models = iter_local_models(home=home)
    first = next(models)
    assert (first.source, first.display_name) == ("folder", "mine.gguf")
    assert [r.source for r in roots] == ["folder", "huggingface", "lmstudio", "ollama"]
    sources = [m.source for m in models]
    assert sources == sorted(sources, key=["huggingface", "lmstudio", "ollama"].index)


def test_a_user_folder_that_is_a_known_store_keeps_its_names(
    tmp_path: Path, gguf_file: Path
) -> None:
    home = tmp_path / "home"
    lms = home / ".lmstudio" / "models"
    place(gguf_file, lms / "p" / "r" / "x.gguf")

    roots = search_roots([lms], home=home, env={})
    (model,) = scan([lms, home], home)

    assert roots == [SearchRoot("lmstudio", lms)]
    assert (model.source, model.display_name) == ("lmstudio", "p/r/x.gguf")


def test_read_info_false_lists_without_reading(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "broken.gguf").write_bytes(b"not gguf")

    (model,) = iter_local_models([tmp_path / "models"], home=tmp_path, env={}, read_info=False)

    assert (model.info, model.error) == (None, None)


def test_a_projector_is_marked_as_not_a_language_model(tmp_path: Path) -> None:
    path = tmp_path / "models" / "mmproj-tiny.gguf"
    path.parent.mkdir()
    writer = gguf.GGUFWriter(path, "clip")
    writer.add_tensor("v.patch_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    (model,) = scan([tmp_path / "models"], tmp_path / "home")

    assert model.info is not None
    assert model.error == "a multimodal projector (mmproj), not a language model"


def test_file_id_is_the_same_for_every_path_to_one_file(tmp_path: Path, gguf_file: Path) -> None:
    """A Hugging Face snapshot link and its blob, or a symlinked folder, name one file; a copy
    is another file; a missing file is named by its normalized absolute path."""
    blob = place(gguf_file, tmp_path / "blobs" / "abc")
    snapshot = tmp_path / "snapshots" / "rev" / "tiny.gguf"
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    folder_link = tmp_path / "models"
    folder_link.symlink_to(tmp_path / "blobs", target_is_directory=True)
    copy = place(gguf_file, tmp_path / "copy.gguf")
    assert file_id(snapshot) == file_id(blob) == file_id(folder_link / "abc")
    assert file_id(copy) != file_id(blob)
    assert file_id(tmp_path / "x" / ".." / "gone.gguf") == str(tmp_path / "gone.gguf")


def test_read_local_model_reads_like_the_scan(tmp_path: Path, gguf_file: Path) -> None:
    """A model opened by path keeps that path and is named by its file name; a broken file
    carries its error."""
    model = read_local_model(gguf_file)
    scanned = next(iter_local_models([gguf_file.parent], home=tmp_path, env={}))
    assert (model.path, model.display_name, model.info) == (gguf_file, "tiny.gguf", scanned.info)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(gguf_file.read_bytes()[:100])
    failed = read_local_model(broken)
    assert failed.info is None and failed.error
