"""The offload sweep's chart: tokens/s by GPU layers, drawn by plotext (``textual-plotext``).

Generation tokens/s on the left axis and prompt tokens/s on the right one (prompt processing is
often ten times faster or more: on one axis the generation line would lie flat on the floor);
an earlier sweep's generation tokens/s as a second series on the left axis. Series colours are
the theme's (accent, success, warning), redrawn when the theme changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from textual.color import Color
from textual_plotext import PlotextPlot

from tui_llm.sweep.records import SweepResult


@dataclass(frozen=True)
class ChartPoint:
    """One measured level: GPU layers, its label (``auto (7)``), and median tokens/s."""

    layers: int
    label: str
    gen_tokens_per_s: float
    prompt_tokens_per_s: float


def chart_points(result: SweepResult | None) -> list[ChartPoint]:
    """The measured layer splits of ``result`` by GPU layers (skipped and failed ones, and
    those with expert layers in RAM, left out)."""
    if result is None:
        return []
    points = [
        ChartPoint(
            row.gpu_layers,
            row.label,
            row.gen_tokens_per_s.median,
            row.prompt_tokens_per_s.median if row.prompt_tokens_per_s else 0.0,
        )
        for row in result.levels
        # Layer splits only: an expert level shares "all" layers with the plain one (the
        # table compares them).
        if row.status == "ok"
        and row.gpu_layers is not None
        and row.gen_tokens_per_s
        and not row.n_cpu_moe
    ]
    return sorted(points, key=lambda point: point.layers)


class SweepChart(PlotextPlot):
    """Tokens/s by GPU layers for one sweep, and an earlier one's generation tokens/s."""

    DEFAULT_CSS = """
    SweepChart { height: 1fr; min-height: 5; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.points: list[ChartPoint] = []
        self.before: list[ChartPoint] = []

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.redraw())
        self.redraw()

    def show(self, points: Sequence[ChartPoint], before: Sequence[ChartPoint] = ()) -> None:
        """Draw ``points`` (this sweep) and ``before`` (an earlier one; empty: none)."""
        self.points = list(points)
        self.before = list(before)
        if self.is_mounted:
            self.redraw()

    def _colour(self, variable: str) -> tuple[int, int, int]:
        value = self.app.theme_variables.get(variable) or "white"
        return Color.parse(value).rgb

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_figure()
        points, before = self.points, self.before
        if not points and not before:
            plt.title("No level measured yet")
            self.refresh()
            return
        if points:
            layers = [p.layers for p in points]
            plt.plot(
                layers,
                [p.gen_tokens_per_s for p in points],
                marker="braille",
                color=self._colour("accent"),
                label="generation tok/s",
            )
            plt.plot(
                layers,
                [p.prompt_tokens_per_s for p in points],
                marker="braille",
                color=self._colour("success"),
                label="prompt tok/s",
                yside="right",
            )
            # plotext's stub types yside as a number; it takes "left" or "right".
            cast(Any, plt).ylim(0, None, yside="right")
        if before:
            plt.plot(
                [p.layers for p in before],
                [p.gen_tokens_per_s for p in before],
                marker="braille",
                color=self._colour("warning"),
                label="generation before",
            )
        plt.ylim(0, None)
        labels = {p.layers: p.label for p in before} | {p.layers: p.label for p in points}
        ticks = sorted(labels)
        plt.xticks([float(t) for t in ticks], [labels[t] for t in ticks])
        plt.xlabel("GPU layers")
        self.refresh()
