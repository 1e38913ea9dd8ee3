"""The Hub tab's messages: a finished download for the screen, and the workers' answers.

`HubModelDownloaded` bubbles to the app; a search or listing answer is posted by its thread
worker to the panel, with the sequence number of the request it answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from tui_llm.catalog.hub import HubError, HubModel, RatedOption
from tui_llm.catalog.hub_download import DownloadResult

__all__ = ["HubFilesAnswer", "HubModelDownloaded", "HubSearchAnswer"]


@dataclass
class HubModelDownloaded(Message):
    """A model was downloaded into the Hugging Face cache and read as a valid GGUF (bubbles).

    `path` is the file to load (the first shard of a split model).
    """

    path: Path
    result: DownloadResult


class HubSearchAnswer(Message, bubble=False):
    """A search worker's answer: models or an error, for the search numbered `seq`."""

    def __init__(
        self, seq: int, query: str, models: list[HubModel] | None, error: HubError | None
    ) -> None:
        super().__init__()
        self.seq, self.query, self.models, self.error = seq, query, models, error


class HubFilesAnswer(Message, bubble=False):
    """A listing worker's answer: rated options or an error, for the listing numbered `seq`."""

    def __init__(
        self, seq: int, repo_id: str, rated: list[RatedOption] | None, error: HubError | None
    ) -> None:
        super().__init__()
        self.seq, self.repo_id, self.rated, self.error = seq, repo_id, rated, error
