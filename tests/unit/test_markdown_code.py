"""Code blocks found in a reply as the chat's Markdown widget finds them (what Ctrl+K copies)."""

from __future__ import annotations

import pytest

from tui_llm.markdown_code import code_blocks


def test_backtick_fences_in_order() -> None:
    reply = "Here:\n```python\nprint('a')\n```\nand\n```sh\nls -l\n```\n"
    assert code_blocks(reply) == ["print('a')", "ls -l"]


def test_a_tilde_fence_is_a_block() -> None:
    assert code_blocks("Run:\n~~~bash\nls -l\nwc -l\n~~~\n") == ["ls -l\nwc -l"]


def test_a_four_backtick_fence_wrapping_a_three_backtick_one_gives_the_inner_code() -> None:
    reply = "A README:\n\n````markdown\n# Demo\n```python\nprint('a')\n```\n````\nDone.\n"
    assert code_blocks(reply) == ["print('a')"]


def test_a_four_backtick_fence_without_a_fence_inside_is_its_own_code() -> None:
    reply = "````\n# Demo\n    indented, but only text inside a fence\n````\n"
    assert code_blocks(reply) == ["# Demo\n    indented, but only text inside a fence"]


def test_inline_code_with_three_backticks_is_not_a_block() -> None:
    reply = "Write ```x``` inline, or `y`.\n\n```sh\nls -l\n```\n"
    assert code_blocks(reply) == ["ls -l"]


def test_a_fence_in_a_list_item_loses_the_list_indentation() -> None:
    reply = "1. Install:\n   ```sh\n   pip install x\n     --upgrade\n   ```\n2. Run it.\n"
    assert code_blocks(reply) == ["pip install x\n  --upgrade"]


def test_a_fence_in_a_block_quote_loses_the_quote_marks() -> None:
    assert code_blocks("> ```py\n> x = 1\n>   y = 2\n> ```\n") == ["x = 1\n  y = 2"]


def test_code_indented_inside_its_fence_is_dedented() -> None:
    reply = "```python\n    def f():\n        return 1\n```\n"
    assert code_blocks(reply) == ["def f():\n    return 1"]


def test_indented_code_is_a_block() -> None:
    reply = "Text\n\n    indented code\n      more\n\nafter\n"
    assert code_blocks(reply) == ["indented code\n  more"]


def test_a_fence_left_open_runs_to_the_end() -> None:
    assert code_blocks("Here:\n```py\nx = 1\ny = 2\n") == ["x = 1\ny = 2"]


@pytest.mark.parametrize(
    "reply",
    ["", "No code here, only `inline`.", "    \n", "<pre>\nhtml is not a code box\n</pre>\n"],
)
def test_text_without_a_code_box_has_no_blocks(reply: str) -> None:
    assert code_blocks(reply) == []
