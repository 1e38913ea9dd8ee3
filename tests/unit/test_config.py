"""Tests for settings.toml: round trips, the user's comments, broken files, atomic writes."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import tomlkit

from tui_llm import paths
from tui_llm.config import (
    MAX_RECENT,
    LoadProfile,
    Settings,
    load_settings,
    model_dirs,
    model_file_identity,
    model_key,
    profile_for,
    remember_load,
    remember_model,
    save_settings,
    set_profile,
    settings_path,
    store_sampling,
)
from tui_llm.engine.protocol import LoadSettings, SamplingParams

USER_FILE = """\
# My tui-llm settings, by hand.
theme = "gruvbox"  # the warm one
model_dirs = [
    "~/models",  # the big disk
]
future_option = "from a newer tui-llm"

[load]
# 8k is enough for me
n_ctx = 8192

[sampling]
temperature = 1  # an integer, as people write it

[plugins.weather]
city = "Oslo"
"""


def a_full_settings() -> Settings:
    settings = Settings(
        model_dirs=["~/models", "/mnt/llm"],
        theme="tui-llm-high-contrast",
        load=LoadProfile(offload="all", n_ctx=16384, kv_cache_type="q8_0", flash_attn=True),
        sampling=SamplingParams(
            temperature=0.2,
            top_p=0.9,
            top_k=20,
            min_p=0.0,
            repeat_penalty=1.05,
            max_tokens=2048,
            seed=7,
            stop=("</s>", "User:"),
        ),
        system_prompt='You are terse.\nUse "quotes" and \\ backslashes.',
        gpu_safety_margin_mib=768,
    )
    remember_model(settings, "/models/b.gguf")
    remember_model(settings, "/models/a.gguf")
    set_profile(settings, "/models/with space.v2.gguf", LoadProfile(offload=12))
    set_profile(settings, "/models/a.gguf", LoadProfile("auto", 2048, "q4_0", False))
    return settings


def test_settings_path_is_in_the_config_dir() -> None:
    assert settings_path() == paths.config_dir() / "settings.toml"


def test_no_file_gives_defaults_without_a_warning() -> None:
    assert load_settings() == (Settings(), None)
    assert not settings_path().exists()  # loading never writes


def test_round_trip_of_every_setting() -> None:
    settings = a_full_settings()

    assert save_settings(settings) is None

    assert load_settings() == (settings, None)
    assert settings_path().read_text().startswith("# tui-llm settings.")


def test_round_trip_of_defaults_and_of_a_second_save() -> None:
    save_settings(Settings())
    assert load_settings() == (Settings(), None)

    settings = a_full_settings()
    save_settings(settings)
    save_settings(dataclasses.replace(settings, gpu_safety_margin_mib=None, last_model=None))

    loaded, warning = load_settings()
    assert warning is None
    assert (loaded.gpu_safety_margin_mib, loaded.last_model) == (None, None)
    data = tomlkit.loads(settings_path().read_text()).unwrap()
    assert "gpu_safety_margin_mib" not in data and "last_model" not in data


def test_comments_formatting_and_unknown_keys_survive_a_save(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(USER_FILE)
    settings, warning = load_settings(path)
    assert warning == f"{path}: unknown keys future_option, plugins (kept, unused)"
    assert (settings.theme, settings.load.n_ctx, settings.sampling.temperature) == (
        "gruvbox",
        8192,
        1.0,
    )

    settings.theme = "nord"
    remember_model(settings, "/m/x.gguf")
    save_settings(settings, path)

    text = path.read_text()
    for kept in (
        "# My tui-llm settings, by hand.",
        "# the big disk",
        "# 8k is enough for me",
        'future_option = "from a newer tui-llm"',
        "temperature = 1  # an integer, as people write it",  # unchanged values keep their form
        '[plugins.weather]\ncity = "Oslo"',
        '"~/models",  # the big disk',
    ):
        assert kept in text
    assert 'theme = "nord"  # the warm one' in text
    assert load_settings(path)[0] == settings
    assert tomlkit.loads(text).unwrap()["recent_models"] == ["/m/x.gguf"]


def test_a_broken_file_gives_one_warning_and_defaults_and_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    broken = 'theme = "nord"\n[load\nn_ctx = 99\n'
    path.write_text(broken)

    settings, warning = load_settings(path)

    assert settings == Settings()
    assert warning is not None and "\n" not in warning
    assert str(path) in warning and "not valid TOML" in warning
    assert path.read_text() == broken  # loading never writes


def test_a_broken_file_is_never_overwritten_saves_go_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    broken = 'theme = "nord"\n[load\n'
    path.write_text(broken)
    assert "settings.unsaved.toml" in (load_settings(path)[1] or "")

    elsewhere = save_settings(dataclasses.replace(Settings(), theme="nord"), path)

    assert path.read_text() == broken
    assert elsewhere == tmp_path / "settings.unsaved.toml"
    assert load_settings(elsewhere) == (dataclasses.replace(Settings(), theme="nord"), None)
    assert "does not parse" in elsewhere.read_text()
    # Every later save goes there too, the newest winning; the user's file stays as it was.
    assert save_settings(dataclasses.replace(Settings(), theme="gruvbox"), path) == elsewhere
    assert load_settings(elsewhere)[0].theme == "gruvbox"
    assert path.read_text() == broken
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.toml", "settings.unsaved.toml"]
    # Fixed: saves go to the file again.
    path.write_text('theme = "nord"\n')
    assert save_settings(dataclasses.replace(Settings(), theme="gruvbox"), path) is None
    assert load_settings(path)[0].theme == "gruvbox"


def test_unreadable_bytes_are_a_warning_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_bytes(b'theme = "\xff\xfe"\n')
    settings, warning = load_settings(path)
    assert settings == Settings()
    assert warning is not None and "cannot read" in warning

    elsewhere = save_settings(settings, path)
    assert elsewhere is not None and path.read_bytes() == b'theme = "\xff\xfe"\n'
    assert load_settings(elsewhere) == (Settings(), None)


def test_unknown_keys_and_tables_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        'theme = "nord"\nnew_thing = [1, 2]\n[load]\nn_ctx = 1024\nturbo = true\n'
        "[sampling]\nmirostat = 2\n[something.else]\nx = {y = 1}\n"
    )

    settings, warning = load_settings(path)

    assert warning == (
        f"{path}: unknown keys new_thing, something, load.turbo, sampling.mirostat (kept, unused)"
    )
    assert (settings.theme, settings.load.n_ctx) == ("nord", 1024)
    assert settings.sampling == SamplingParams()


def test_misspelt_keys_are_named_once_with_the_key_meant_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        "temprature = 0.3\n[load]\nn_cxt = 2048\n[sampling]\nthemee = 'nord'\ntop_pp = 0.5\n"
        '[profiles."/m/a.gguf"]\nofload = 3\n'
    )
    settings, warning = load_settings(path)
    assert warning is not None and "\n" not in warning
    assert warning.count("temprature") == 1
    for named in (
        "temprature (sampling.temperature?)",
        "load.n_cxt (load.n_ctx?)",
        "sampling.themee (theme?)",
        "sampling.top_pp (sampling.top_p?)",
    ):
        assert named in warning
    assert "and 1 more" in warning  # the fifth, profiles."/m/a.gguf".ofload
    assert settings.sampling.temperature == SamplingParams().temperature
    settings.theme = "nord"
    save_settings(settings, path)
    text = path.read_text()
    assert "temprature = 0.3" in text and "n_cxt = 2048" in text and "ofload = 3" in text


def test_wrong_types_fall_back_field_by_field(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        "theme = 5\n"
        'model_dirs = ["/ok", 3]\n'
        'system_prompt = "kept"\n'
        "gpu_safety_margin_mib = -1\n"
        "[load]\n"
        'n_ctx = "big"\n'
        'kv_cache_type = "q3_weird"\n'
        'offload = "all"\n'
        "flash_attn = 1\n"
        "[sampling]\n"
        "temperature = true\n"
        "top_p = 1.5\n"
        "top_k = 50\n"
        "min_p = nan\n"
        '[profiles."/m/a.gguf"]\n'
        "offload = -3\n"
        "n_ctx = 1024\n"
        "[profiles]\n"
        '"/m/b.gguf" = 12\n'
    )

    settings, warning = load_settings(path)

    default = Settings()
    assert (settings.theme, settings.model_dirs, settings.system_prompt) == (
        default.theme,
        [],
        "kept",
    )
    assert settings.gpu_safety_margin_mib is None
    assert settings.load == LoadProfile(offload="all")
    assert settings.sampling == dataclasses.replace(default.sampling, top_k=50)
    # A profile starts from the default load settings, keeping its own valid values.
    assert settings.profiles == {"/m/a.gguf": LoadProfile(offload="all", n_ctx=1024)}
    assert warning is not None and "\n" not in warning
    assert (
        "ignored invalid theme, model_dirs, gpu_safety_margin_mib, load.n_ctx and 7 more" in warning
    )


def test_a_section_of_the_wrong_kind_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('load = "fast"\nsampling = 3\ntheme = "nord"\n')
    settings, warning = load_settings(path)
    assert settings == dataclasses.replace(Settings(), theme="nord")
    assert warning is not None and "load, sampling" in warning


def test_saving_leaves_an_invalid_value_alone_unless_the_setting_changed(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('theme = "nord"\n[load]\nn_ctx = "big"\n')
    settings, _ = load_settings(path)

    save_settings(dataclasses.replace(settings, theme="dracula"), path)
    assert 'n_ctx = "big"' in path.read_text()

    changed = dataclasses.replace(settings, load=LoadProfile(n_ctx=2048))
    save_settings(changed, path)
    assert load_settings(path) == (changed, None)


def test_the_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(USER_FILE)
    path.chmod(0o640)

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        save_settings(dataclasses.replace(Settings(), theme="nord"), path)

    assert path.read_text() == USER_FILE  # the old file is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.toml"]  # no temp left
    monkeypatch.undo()

    save_settings(dataclasses.replace(Settings(), theme="nord"), path)
    assert os.stat(path).st_mode & 0o777 == 0o640  # the user's permissions are kept


def test_a_symlinked_settings_file_is_written_through_the_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "tui-llm.toml"
    real.parent.mkdir()
    real.write_text('theme = "nord"\n')
    link = tmp_path / "settings.toml"
    link.symlink_to(real)

    save_settings(dataclasses.replace(Settings(), theme="dracula"), link)

    assert link.is_symlink()
    assert load_settings(real)[0].theme == "dracula"


def test_save_creates_the_config_directory() -> None:
    assert not paths.config_dir().exists()
    save_settings(Settings())
    assert settings_path().is_file()


def test_remember_model_keeps_the_most_recent_first_without_duplicates() -> None:
    settings = Settings()
    for number in range(12):
        remember_model(settings, f"/models/m{number}.gguf")
    remember_model(settings, "/models/m5.gguf")

    assert len(settings.recent_models) == MAX_RECENT
    assert settings.recent_models[:3] == ["/models/m5.gguf", "/models/m11.gguf", "/models/m10.gguf"]
    assert settings.recent_models.count("/models/m5.gguf") == 1
    assert settings.last_model == "/models/m5.gguf"


def test_model_paths_are_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    settings = Settings()
    remember_model(settings, "rel/model.gguf")
    remember_model(settings, "~/m.gguf")

    assert settings.recent_models == [
        str(tmp_path / "home" / "m.gguf"),
        str(tmp_path / "rel" / "model.gguf"),
    ]
    assert model_key("rel/model.gguf") == str(tmp_path / "rel" / "model.gguf")


def test_a_linked_model_keeps_its_name_and_is_the_same_file_as_its_target(tmp_path: Path) -> None:
    blob = tmp_path / "blobs" / "0123abcd"
    blob.parent.mkdir()
    blob.write_bytes(b"GGUF")
    entry = tmp_path / "snapshots" / "m-00001-of-00002.gguf"
    entry.parent.mkdir()
    entry.symlink_to("../blobs/0123abcd")
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")

    assert model_key(entry) == str(entry), "the shard name, not the blob's"
    assert model_file_identity(entry) == model_file_identity(blob)
    assert model_file_identity(entry) != model_file_identity(other)
    assert model_file_identity(tmp_path / "gone.gguf") == str(tmp_path / "gone.gguf")


def test_recent_models_in_the_file_are_deduplicated_and_capped(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    names = [f'"/m/{n % 11}.gguf"' for n in range(15)]
    path.write_text(f"recent_models = [{', '.join(names)}]\n")
    settings, warning = load_settings(path)
    assert warning is None
    assert settings.recent_models == [f"/m/{n}.gguf" for n in range(MAX_RECENT)]


def test_profile_for_falls_back_to_the_default_load_settings(tmp_path: Path) -> None:
    defaults = LoadProfile(offload="all", n_ctx=8192)
    settings = dataclasses.replace(Settings(), load=defaults)
    model = tmp_path / "m.gguf"

    assert profile_for(settings, model) == defaults

    own = LoadProfile(offload=20, n_ctx=4096, kv_cache_type="q8_0", flash_attn=True)
    set_profile(settings, model, own)
    assert profile_for(settings, str(model)) == own
    assert profile_for(settings, tmp_path / "other.gguf") == defaults

    save_settings(settings)
    assert profile_for(load_settings()[0], model) == own

    set_profile(settings, model, None)
    save_settings(settings)
    assert profile_for(load_settings()[0], model) == defaults
    assert "profiles" not in tomlkit.loads(settings_path().read_text()).unwrap()


def test_model_dir_paths_start_with_the_default_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    settings = Settings(model_dirs=["~/llm", str(paths.default_models_dir())])
    assert model_dirs(settings) == [paths.default_models_dir(), Path("/home/someone/llm")]


def test_a_successful_load_becomes_the_model_profile_and_is_saved() -> None:
    settings = Settings()
    loaded = LoadSettings("/m/a.gguf", offload_layers=20, n_ctx=2048, kv_cache_type="q8_0")

    remember_load(settings, loaded)
    save_settings(settings)

    settings = load_settings()[0]
    assert settings.recent_models == ["/m/a.gguf"] and settings.last_model == "/m/a.gguf"
    assert profile_for(settings, "/m/a.gguf") == LoadProfile(20, 2048, "q8_0", False)
    remember_load(settings, dataclasses.replace(loaded, offload_layers="all"))
    assert profile_for(settings, "/m/a.gguf").offload == "all"


def test_stored_sampling_is_saved() -> None:
    settings = Settings()
    sampling = SamplingParams(temperature=0.3, top_k=5, stop=("###",))

    store_sampling(settings, sampling, "Answer in French.")
    save_settings(settings)

    loaded = load_settings()[0]
    assert (loaded.sampling, loaded.system_prompt) == (sampling, "Answer in French.")
