"""``python -m benchmarks`` rewrites the marked sections of the docs and nothing else; no
benchmark runs here (``run_one`` is replaced by a fixed outcome)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks import suite
from benchmarks.sections import end_marker, markdown_table, replace_sections, start_marker

REPO = Path(__file__).resolve().parents[2]

PAGE = """# Figures

Hand-written intro, with a | pipe and trailing spaces.{spaces}

<!-- bench:speed start -->

| old | table |
|---|---|
| 1 | 2 |

<!-- bench:speed end -->

Prose between the sections stays.

<!-- bench:memory start -->
old memory figures
<!-- bench:memory end -->
Tail, no newline at the end."""


def page() -> str:
    return PAGE.format(spaces="   ")


def test_sections_are_replaced_and_the_text_around_them_is_kept() -> None:
    rewrite = replace_sections(page(), {"speed": "| new |\n|---|\n| 3 |", "memory": "12 MiB\n"})
    assert rewrite.problems == []
    assert rewrite.replaced == ["speed", "memory"]
    assert rewrite.text == (
        "# Figures\n\nHand-written intro, with a | pipe and trailing spaces.   \n\n"
        "<!-- bench:speed start -->\n\n| new |\n|---|\n| 3 |\n\n<!-- bench:speed end -->\n\n"
        "Prose between the sections stays.\n\n"
        "<!-- bench:memory start -->\n\n12 MiB\n\n<!-- bench:memory end -->\n"
        "Tail, no newline at the end."
    )
    # Running again with the same figures changes nothing.
    again = replace_sections(rewrite.text, {"speed": "| new |\n|---|\n| 3 |", "memory": "12 MiB"})
    assert again.text == rewrite.text


def test_a_section_without_markers_is_reported_and_the_others_still_written() -> None:
    rewrite = replace_sections(page(), {"latency": "5 ms", "memory": "12 MiB"})
    assert rewrite.problems == ["bench:latency: no markers on the page"]
    assert rewrite.replaced == ["memory"]
    assert "5 ms" not in rewrite.text
    assert "| old | table |" in rewrite.text  # a section not asked for is left as it was


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<!-- bench:a start -->\nx\n", "bench:a: a start marker without an end marker"),
        ("x\n<!-- bench:a end -->\n", "bench:a: an end marker without a start marker before it"),
        (
            "<!-- bench:a end -->\n<!-- bench:a start -->\n",
            "bench:a: an end marker without a start marker before it",
        ),
        (
            "<!-- bench:a start -->\n<!-- bench:b start -->\n<!-- bench:b end -->\n"
            "<!-- bench:a end -->\n",
            "bench:a: a start marker without an end marker",
        ),
        (
            "<!-- bench:a start -->\n<!-- bench:a end -->\n"
            "<!-- bench:a start -->\n<!-- bench:a end -->\n",
            "bench:a: a second pair of markers",
        ),
    ],
)
def test_malformed_markers_are_reported_and_nothing_is_replaced(text: str, problem: str) -> None:
    rewrite = replace_sections(text, {"a": "NEW"})
    assert problem in rewrite.problems
    assert rewrite.replaced == []
    assert rewrite.text == text


def test_markdown_tables_escape_pipes_in_cells() -> None:
    assert markdown_table(("a", "b"), [("x|y", "1")]) == "| a | b |\n|---|---|\n| x\\|y | 1 |"


def test_every_section_of_every_benchmark_has_its_markers_in_the_docs() -> None:
    """A doc edit that drops or breaks a pair of markers would make the next run fail there."""
    for benchmark in suite.BENCHMARKS:
        text = (REPO / benchmark.page).read_text(encoding="utf-8")
        for name in benchmark.sections:
            assert text.count(start_marker(name)) == 1, (benchmark.page, name)
            assert text.count(end_marker(name)) == 1, (benchmark.page, name)
        rewrite = replace_sections(text, dict.fromkeys(benchmark.sections, "x"))
        assert rewrite.problems == [], benchmark.page


def git_repo(folder: Path) -> Path:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)

    (folder / "docs").mkdir()
    (folder / "docs" / "benchmarks.md").write_text(page(), encoding="utf-8")
    (folder / "tool.py").write_text("x = 1\n", encoding="utf-8")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    return folder


def test_source_state_names_the_commit_and_changes_outside_docs(tmp_path: Path) -> None:
    repo = git_repo(tmp_path)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    assert suite.source_state(repo) == f"`{commit}`, clean"
    (repo / "docs" / "benchmarks.md").write_text("rewritten by a run", encoding="utf-8")
    assert suite.source_state(repo) == f"`{commit}`, clean"
    (repo / "tool.py").write_text("x = 2\n", encoding="utf-8")
    (repo / "new.py").write_text("", encoding="utf-8")
    assert suite.source_state(repo) == f"`{commit}` with uncommitted changes (`tool.py`, `new.py`)"


class Ran:
    """Stands in for ``run_one``: the benchmarks asked for, and a fixed outcome for each."""

    def __init__(self, sections: dict[str, dict[str, str]]) -> None:
        self.sections = sections
        self.names: list[str] = []

    def __call__(self, benchmark: suite.Benchmark, quick: bool) -> suite.Outcome:
        self.names.append(benchmark.name)
        return suite.Outcome(benchmark, self.sections[benchmark.name], seconds=12.0)


def suite_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sections: dict[str, str]) -> Ran:
    ran = Ran({"speedy": sections})
    speedy = suite.Benchmark(
        "speedy", "benchmarks.none", "docs/benchmarks.md", ("speed", "memory"), "about", "1 s"
    )
    monkeypatch.setattr(suite, "BENCHMARKS", (speedy,))
    monkeypatch.setattr(suite, "BY_NAME", {"speedy": speedy})
    monkeypatch.setattr(suite, "run_one", ran)
    git_repo(tmp_path)
    return ran


def test_a_run_writes_each_section_with_when_where_and_how(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran = suite_with(monkeypatch, tmp_path, {"speed": "| tok/s |\n|---|\n| 99 |"})
    assert suite.main(["--only", "speedy"], root=tmp_path) == 0
    assert ran.names == ["speedy"]
    text = (tmp_path / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    section = text.split(start_marker("speed"))[1].split(end_marker("speed"))[0]
    line, table = section.strip().split("\n\n")
    assert table == "| tok/s |\n|---|\n| 99 |"
    assert "by `.venv/bin/python -m benchmarks --only speedy` (12 s;" in line
    assert suite.machine_description() in line
    assert "clean" in line and "UTC" in line
    assert "old memory figures" in text  # not produced this time: left alone
    assert text.endswith("Tail, no newline at the end.")


def test_a_quick_run_writes_nothing_unless_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    suite_with(monkeypatch, tmp_path, {"speed": "quick figures"})
    before = (tmp_path / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert suite.main(["--quick"], root=tmp_path) == 0
    assert (tmp_path / "docs" / "benchmarks.md").read_text(encoding="utf-8") == before
    assert suite.main(["--quick", "--write"], root=tmp_path) == 0
    text = (tmp_path / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "quick figures" in text and "--only speedy --quick`" in text


def test_a_section_with_no_place_in_the_docs_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite_with(monkeypatch, tmp_path, {"speed": "kept", "memory": "kept too", "latency": "5 ms"})
    assert suite.main([], root=tmp_path) == 1
    err = capsys.readouterr().err
    assert "speedy: undeclared section latency" in err
    assert "benchmarks.md: bench:latency: no markers on the page" in err
    text = (tmp_path / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "kept" in text and "kept too" in text


def test_an_unknown_benchmark_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        suite.parse_args(["--only", "sweep,speed"])
    assert exit_info.value.code == 2
    assert "unknown benchmark speed" in capsys.readouterr().err
