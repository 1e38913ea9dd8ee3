"""The offload sweep screen: tokens/s at each GPU offload level of the loaded model.

A form (levels, prompt and generated tokens, repeats), the progress, a table filled row by row
and a chart of tokens/s by GPU layers. The sweep runs on the main screen (``SweepRun``), so this
screen can go back to the chat (``c``) and be opened again (``b`` in the offload panel) while it
measures. At the end ``a`` applies the fastest level that loaded; closing brings back what was
loaded before. Finished sweeps are saved; ``e`` lists the model's earlier ones to compare with.
"""

from __future__ import annotations

from dataclasses import replace

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Label

from tui_llm.screens.stored_list import local_minute
from tui_llm.screens.sweep_list import SweepListScreen
from tui_llm.screens.sweep_run import SweepEnded, SweepProgressed, SweepRun, level_settings
from tui_llm.store import StoredSweep, StoreError
from tui_llm.sweep import LevelSyntaxError, SweepResult, default_levels, parse_levels
from tui_llm.sweep.run import SweepPlan
from tui_llm.sweep.table import describe
from tui_llm.widgets.literal import notify_literal
from tui_llm.widgets.sweep_chart import SweepChart, chart_points
from tui_llm.widgets.sweep_table import SweepTable
from tui_llm.widgets.textline import TextLine

DEFAULT_PROMPT_TOKENS = 512
DEFAULT_GEN_TOKENS = 128
DEFAULT_REPEATS = 3


def offload_text(settings_offload: int | str, total_layers: int) -> str:
    """A load's offload as ``4/9 layers`` (``all`` counted)."""
    layers = total_layers if settings_offload == "all" else int(settings_offload)
    return f"{layers}/{total_layers} layers"


class SweepScreen(Screen[None]):
    """The sweep of ``run``'s model: its form, progress, table and chart."""

    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]

    # Esc and q: "Stop and close" while the sweep runs, "Close" after (check_action picks one).
    BINDINGS = [
        Binding("escape,q", "stop_and_close", "Stop and close"),
        Binding("escape,q", "close", "Close"),
        Binding("r", "start", "Run"),
        Binding("c", "chat", "Chat"),
        Binding("a", "apply", "Apply fastest"),
        Binding("e", "earlier", "Earlier"),
        Binding("f1", "app.help", "Help", show=False),
    ]

    DEFAULT_CSS = """
    SweepScreen #title { height: 1; padding: 0 1; background: $panel; text-style: bold; }
    SweepScreen #form { height: 1; padding: 0 1; margin: 1 0 0 0; }
    SweepScreen #form Label { padding: 0 1 0 0; color: $text-muted; }
    SweepScreen #form Input { width: 6; margin: 0 2 0 0; }
    SweepScreen #form #levels { width: 1fr; min-width: 20; max-width: 40; }
    SweepScreen #status { padding: 0 1; margin: 1 0 0 0; color: $text; }
    SweepScreen #status.-error { color: $error; }
    SweepScreen #results { height: auto; max-height: 50%; margin: 1 0 0 0; }
    SweepScreen #chart { height: 1fr; min-height: 5; }
    SweepScreen #about-box { height: auto; }
    SweepScreen #about { padding: 0 1; color: $text-muted; }
    SweepScreen.-short #form, SweepScreen.-short #status, SweepScreen.-short #results {
        margin: 0;
    }
    SweepScreen.-short #about-box { display: none; }
    """

    def __init__(self, run: SweepRun) -> None:
        super().__init__()
        self.run = run

    # ---- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        run = self.run
        plan = run.plan
        levels = plan.levels if plan is not None else default_levels(run.total_layers, moe=run.moe)
        yield TextLine(
            f"Offload sweep · {run.model_path.name} · {run.total_layers} layers",
            id="title",
            hide_empty=False,
        )
        with Horizontal(id="form"):
            yield Label("levels")
            yield Input(", ".join(spec.label for spec in levels), id="levels", compact=True)
            yield Label("prompt")
            yield Input(
                str(plan.prompt_tokens if plan else DEFAULT_PROMPT_TOKENS),
                id="prompt-tokens",
                type="integer",
                compact=True,
            )
            yield Label("generate")
            yield Input(
                str(plan.gen_tokens if plan else DEFAULT_GEN_TOKENS),
                id="gen-tokens",
                type="integer",
                compact=True,
            )
            yield Label("repeats")
            yield Input(
                str(plan.repeats if plan else DEFAULT_REPEATS),
                id="repeats",
                type="integer",
                compact=True,
            )
        yield TextLine(id="status", hide_empty=False)
        yield SweepTable(id="results")
        yield SweepChart(id="chart")
        with Vertical(id="about-box"):
            yield TextLine(id="about")
        yield Footer()

    def on_mount(self) -> None:
        run = self.run
        run.viewer = self
        if run.state == "ready" and run.viewed is None and run.store is not None:
            self._open_latest_saved()
        self._show()
        if self._shown() is None:
            self.query_one("#levels", Input).focus()
        else:
            self.query_one(SweepTable).focus()

    def on_unmount(self) -> None:
        if self.run.viewer is self:
            self.run.viewer = None

    def _open_latest_saved(self) -> None:
        """Show the model's latest saved sweep until a new one starts."""
        assert self.run.store is not None
        try:
            latest = self.run.store.list_for_model(str(self.run.model_path), limit=1)
            if latest and latest[0].readable:
                self.run.viewed = self.run.store.load(latest[0].id)
        except StoreError as exc:
            notify_literal(self, str(exc), severity="warning", timeout=8)

    # ---- what is shown --------------------------------------------------------------------

    def _shown(self) -> SweepResult | None:
        """The run's sweep once started, else the saved sweep opened."""
        if self.run.state != "ready":
            return self.run.partial_result()
        return self.run.viewed.result if self.run.viewed is not None else None

    def _before(self) -> SweepResult | None:
        before = self.run.before
        return before.result if before is not None else None

    def _show(self) -> None:
        """Redraw everything from the run (a few rows: rebuilt whole)."""
        result, before = self._shown(), self._before()
        self.query_one(SweepTable).show(result, before)
        self.query_one(SweepChart).show(chart_points(result), chart_points(before))
        about = describe(result) if result is not None and result.machine.cpu else ""
        self.query_one("#about", TextLine).show(about)
        self._show_status(result)
        self.query_one("#form").disabled = self.run.running
        self.refresh_bindings()

    def _show_status(self, result: SweepResult | None) -> None:
        run = self.run
        line = self.query_one("#status", TextLine)
        line.set_class(run.state == "failed", "-error")
        if run.state == "running":
            total = len(run.plan.levels) if run.plan is not None else 0
            current = min(len(run.rows) + 1, total)
            line.show(
                f"Measuring level {current} of {total}: {run.progress} · Esc stops after this "
                "measurement · c back to the chat (the sweep goes on)"
            )
        elif run.state == "failed":
            line.show(f"The sweep failed: {run.error} · r runs it again{self._back_text()}")
        elif run.state in ("done", "stopped") and result is not None:
            head = "Done" if run.state == "done" else "Stopped"
            saved = " · saved" if run.saved_id is not None else ""
            if run.save_error:
                saved = f" · not saved: {run.save_error}"
            line.show(f"{head}: {self._fastest_text(result)}{saved}{self._back_text()}")
        elif run.viewed is not None:
            line.show(
                f"Saved sweep of {local_minute(run.viewed.result.started)}: "
                f"{self._fastest_text(run.viewed.result)} · r runs a new sweep as the form says · "
                "e earlier sweeps"
            )
        else:
            line.show(
                "Enter runs the sweep: each level is loaded and measured while the chat waits; "
                "the model comes back as it is now."
            )

    def _back_text(self) -> str:
        """What Esc brings back, while the sweep still holds the engine."""
        run = self.run
        if not run.holds_engine:
            return ""
        return f" · Esc brings back {offload_text(run.previous.offload_layers, run.total_layers)}"

    @staticmethod
    def _fastest_text(result: SweepResult) -> str:
        fastest = result.fastest()
        if fastest is None or fastest.gen_tokens_per_s is None:
            return "no level measured"
        speedup = result.speedup(fastest)
        against = f", {speedup:.1f}x CPU only" if speedup is not None else ""
        return (
            f"fastest {fastest.label} ({fastest.gpu_layers}/{result.total_layers} layers) at "
            f"{fastest.gen_tokens_per_s.median:.1f} tok/s{against} · a applies it"
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        running = self.run.running
        if action in ("start", "close"):
            return not running
        if action == "stop_and_close":
            return running
        if action == "chat":
            return running
        if action == "apply":
            result = self._shown()
            return not running and result is not None and result.fastest() is not None
        return True

    @on(SweepProgressed)
    def on_sweep_progressed(self, _event: SweepProgressed) -> None:
        self._show()

    @on(SweepEnded)
    def on_sweep_ended(self, _event: SweepEnded) -> None:
        self._show()
        self.query_one(SweepTable).focus()

    # ---- actions --------------------------------------------------------------------------

    @on(Input.Submitted)
    def on_form_submitted(self, _event: Input.Submitted) -> None:
        self.action_start()

    def _plan(self) -> SweepPlan | str:
        """The form as a plan, or why it cannot be one."""
        run = self.run
        text = self.query_one("#levels", Input).value
        try:
            levels = (
                parse_levels(text)
                if text.strip()
                else default_levels(run.total_layers, moe=run.moe)
            )
        except LevelSyntaxError as exc:
            return f"levels: {exc}"
        counts: dict[str, int] = {}
        for field in ("prompt-tokens", "gen-tokens", "repeats"):
            value = self.query_one(f"#{field}", Input).value.strip()
            if not value.isdigit() or int(value) < 1:
                return f"{field.replace('-', ' ')}: a whole number of 1 or more"
            counts[field] = int(value)
        return SweepPlan(
            model_path=run.model_path,
            total_layers=run.total_layers,
            levels=tuple(levels),
            # Plain levels are layer splits: the expert levels say where the experts go.
            load=replace(run.previous, offload_layers=0, n_cpu_moe=0),
            prompt_tokens=counts["prompt-tokens"],
            gen_tokens=counts["gen-tokens"],
            repeats=counts["repeats"],
            moe=run.moe,
        )

    def action_start(self) -> None:
        run, main = self.run, self.run.main
        if run.running:
            return
        problem = None
        if main.model_loading or main.loaded is None:
            problem = "The model is loading: start the sweep once it is ready."
        elif main.generating:
            problem = "A reply is streaming: stop it (Esc in the chat) or wait for it first."
        elif not run.is_for(main.loaded):
            problem = "Another model is loaded now: close this and open the sweep again."
        if problem is not None:
            notify_literal(self, problem, severity="warning")
            return
        assert main.loaded is not None
        if not run.holds_engine:
            run.previous = main.loaded.settings
        plan = self._plan()
        if isinstance(plan, str):
            line = self.query_one("#status", TextLine)
            line.add_class("-error")
            line.show(plan)
            return
        if run.result is not None and run.saved_id is not None:
            run.before = StoredSweep(run.saved_id, run.result)  # the run before this one
        elif run.viewed is not None:
            run.before, run.viewed = run.viewed, None
        run.start(plan, run.previous)
        self._show()
        self.query_one(SweepTable).focus()

    def action_close(self) -> None:
        """Stop the sweep after the measurement at hand (it then brings the model back), or
        bring the model back now; close."""
        run = self.run
        if run.running:
            run.stop()
        else:
            run.release(run.previous)
        run.viewer = None
        self.dismiss()

    def action_stop_and_close(self) -> None:
        self.action_close()

    def action_chat(self) -> None:
        """Back to the chat while the sweep goes on."""
        if not self.run.running:
            self.action_close()
            return
        self.run.viewer = None
        self.dismiss()

    def action_apply(self) -> None:
        """Load the fastest level that loaded, with the model's settings (KV cache carried)."""
        run, main = self.run, self.run.main
        result = self._shown()
        fastest = result.fastest() if result is not None else None
        if run.running or result is None or fastest is None:
            return
        if run.holds_engine:
            run.release(level_settings(run.previous, fastest))
        elif main.loaded is None or main.model_loading or not run.is_for(main.loaded):
            notify_literal(self, "Nothing to apply it to: the model is not loaded.")
            return
        else:
            main.run_load(level_settings(main.loaded.settings, fastest))
        run.viewer = None
        self.dismiss()

    def action_earlier(self) -> None:
        run = self.run
        if run.store is None:
            self.notify("Sweeps are not being saved here (no store).", severity="warning")
            return

        def chosen(sweep_id: int | None) -> None:
            if sweep_id is None or run.store is None:
                return
            try:
                stored = run.store.load(sweep_id)
            except StoreError as exc:
                notify_literal(self, str(exc), severity="error")
                return
            shown_id = run.saved_id if run.state != "ready" else None
            if run.viewed is not None and run.state == "ready":
                shown_id = run.viewed.id
            if self._shown() is None:
                run.viewed = stored
            elif sweep_id == shown_id:
                self.notify("That is the sweep shown here.")
                return
            else:
                run.before = stored
            self._show()

        self.app.push_screen(
            SweepListScreen(run.store, str(run.model_path), run.model_path.name), chosen
        )
