"""The offload control: current split, a pending value moved with single keys, load progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import var
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from tui_llm.catalog.metadata import human_bytes
from tui_llm.engine.protocol import KV_CACHE_TYPES, OffloadValue, SplitMode
from tui_llm.messages import ApplyLoadSettings
from tui_llm.placement import n_cpu_moe_count, n_cpu_moe_value, split_text
from tui_llm.session import PlacementFigures, PlacementRequest
from tui_llm.widgets.textline import TextLine

CONTEXT_SIZES = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)


# "layer" first: llama.cpp's default, and the one every backend can do.
SPLIT_MODES: tuple[SplitMode, ...] = ("layer", "row", "none")


@dataclass(frozen=True)
class AutoPlacement:
    """What Auto picked: layers, expert layers in RAM, the split (``()``: as it is), and why."""

    offload_layers: int
    n_cpu_moe: int
    tensor_split: tuple[float, ...]
    reason: str


Estimator = Callable[[PlacementRequest], PlacementFigures | None]


class OffloadPanel(Vertical, can_focus=True):
    """Shows ``GPU layers 20 / 33`` and lets the user pick a new split, then apply it.

    For a mixture-of-experts model a second value: the blocks whose expert weights stay in RAM
    (``n_cpu_moe``, 0 .. n_layer). With two or more offload devices, the split between them
    (proportions, split mode, main GPU). Every pending value is estimated per device.
    """

    class SweepRequested(Message):
        """The user asks for the offload sweep of the loaded model (``b``)."""

    class SplitRequested(Message):
        """The user asks to type a new split between the devices (``s``)."""

    BINDINGS = [
        Binding("left,minus", "step(-1)", "−1 layer", show=False),
        Binding("right,plus,equals_sign", "step(1)", "+1 layer", show=False),
        Binding("pageup,left_square_bracket", "step_percent(-10)", "−10%", show=False),
        Binding("pagedown,right_square_bracket", "step_percent(10)", "+10%", show=False),
        Binding("home,n", "set_none", "None", show=False),
        Binding("end,l", "set_all", "All", show=False),
        Binding("a", "auto", "Auto"),
        Binding("c", "cycle_ctx", "Context", show=False),
        Binding("f", "toggle_flash", "Flash attn", show=False),
        Binding("k", "cycle_kv", "KV type", show=False),
        Binding("b", "sweep", "Sweep", show=False),
        Binding("up", "step_experts(1)", "+1 expert layer in RAM", show=False),
        Binding("down", "step_experts(-1)", "−1 expert layer in RAM", show=False),
        Binding("x", "toggle_experts", "Experts all/none in RAM", show=False),
        Binding("s", "edit_split", "Split", show=False),
        Binding("m", "cycle_split_mode", "Split mode", show=False),
        Binding("g", "cycle_main_gpu", "Main GPU", show=False),
        Binding("enter", "apply", "Apply"),
        Binding("escape", "revert", "Revert", show=False),
    ]

    DEFAULT_CSS = """
    OffloadPanel {
        height: auto;
        border: round $primary 40%;
        padding: 0 1;
    }
    OffloadPanel:focus-within, OffloadPanel:focus { border: round $accent; }
    OffloadPanel { border-title-color: $text-muted; border-title-style: bold; }
    OffloadPanel > .split { text-style: bold; }
    OffloadPanel > .pending { color: $accent; }
    OffloadPanel > .warning { color: $warning; }
    OffloadPanel > .hint { color: $text-muted; }
    """

    total_layers: var[int] = var(0)
    current_layers: var[int] = var(0)
    pending_layers: var[int] = var(0)
    n_ctx: var[int] = var(4096)
    flash_attn: var[bool] = var(False)
    kv_cache_type: var[str] = var("f16")
    moe_layers: var[int] = var(0)  # blocks with expert weights; 0: a dense model
    current_cpu_moe: var[int] = var(0)
    pending_cpu_moe: var[int] = var(0)
    devices: var[tuple[str, ...]] = var(())  # the offload devices, in llama.cpp's order
    tensor_split: var[tuple[float, ...]] = var(())
    split_mode: var[SplitMode] = var("layer")
    main_gpu: var[int] = var(0)
    warning: var[str] = var("")
    status: var[str] = var("")

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "GPU offload · Ctrl+O"
        self.estimator: Estimator | None = None
        self.auto_placement: Callable[[PlacementRequest], AutoPlacement | None] | None = None
        self._loaded = self.pending()
        self._estimate_args: PlacementRequest | None = None

    def compose(self) -> ComposeResult:
        yield TextLine(classes="split")
        yield TextLine(classes="pending")
        yield TextLine(classes="experts")
        yield TextLine(classes="devices")
        yield TextLine(classes="estimate")
        yield TextLine(classes="settings")
        # The load progress keeps its row, blank between loads: a load must not relayout the screen.
        yield TextLine(classes="progress", id="load-progress", hide_empty=False)
        yield TextLine(classes="warning")
        yield TextLine(classes="status")
        yield Static(
            "←/→ layer · [/] 10% · Home/End none/all · a auto · c ctx · f flash · k KV · "
            "Enter apply · b sweep",
            markup=False,
            classes="hint",
        )
        yield TextLine(classes="hint placement-hint")

    def on_mount(self) -> None:
        self.call_later(self.refresh_text)

    # ---- state from the app -----------------------------------------------------------------

    def set_loaded(
        self,
        offloaded: int,
        total: int,
        n_ctx: int,
        flash_attn: bool,
        kv_cache_type: str,
        *,
        moe_layers: int = 0,
        n_cpu_moe: OffloadValue = 0,
        devices: tuple[str, ...] = (),
        tensor_split: tuple[float, ...] = (),
        split_mode: SplitMode = "layer",
        main_gpu: int = 0,
    ) -> None:
        """What is loaded now; the pending values follow it. ``moe_layers`` is the blocks with
        expert weights (0: dense), ``devices`` the offload devices' names."""
        self.total_layers = total
        self.current_layers = offloaded
        self.pending_layers = offloaded
        self.n_ctx = n_ctx
        self.flash_attn = flash_attn
        self.kv_cache_type = kv_cache_type
        self.moe_layers = moe_layers
        self.current_cpu_moe = self.pending_cpu_moe = n_cpu_moe_count(n_cpu_moe, moe_layers)
        self.devices = devices
        self.tensor_split = tensor_split
        self.split_mode = split_mode
        self.main_gpu = main_gpu
        self._loaded = self.pending()
        self._estimate_args = None
        self.refresh_text()

    def pending(self) -> PlacementRequest:
        """The pending settings, as the estimate and the reload take them."""
        return PlacementRequest(
            offload_layers=self.pending_layers,
            n_cpu_moe=n_cpu_moe_value(self.pending_cpu_moe, self.moe_layers),
            n_ctx=self.n_ctx,
            flash_attn=self.flash_attn,
            kv_cache_type=self.kv_cache_type,
            tensor_split=self.tensor_split,
            split_mode=self.split_mode,
            main_gpu=self.main_gpu,
        )

    def set_model_shape(self, total: int, pending: int) -> None:
        """A model is chosen but not loaded yet."""
        self.total_layers = total
        self.pending_layers = min(pending, total)
        self.refresh_text()

    def show_progress(self, progress: float | None) -> None:
        """Show llama.cpp's load progress as a bar (``None`` blanks the row)."""
        if not self.is_mounted or not self.children:
            return
        line = self.query_one("#load-progress", TextLine)
        if progress is None:
            line.show("")
        else:
            line.show(progress_bar(progress, max(10, line.content_size.width or 40)))

    @property
    def dirty(self) -> bool:
        """Whether the pending settings differ from what is loaded."""
        return self.pending() != self._loaded

    @property
    def several_devices(self) -> bool:
        return len(self.devices) >= 2

    # ---- rendering ----------------------------------------------------------------------------

    def watch_pending_layers(self) -> None:
        self.refresh_text()

    def watch_pending_cpu_moe(self) -> None:
        self.refresh_text()

    def watch_warning(self) -> None:
        self.refresh_text()

    def watch_status(self) -> None:
        self.refresh_text()

    def refresh_text(self) -> None:
        if not self.is_mounted:
            return
        total = self.total_layers
        if total == 0:
            self._line("split").show("No model loaded")
            self._line("pending").show("")
        else:
            self._line("split").show(f"GPU layers {self.current_layers} / {total}")
            bar = _bar(self.pending_layers, total, 20)
            marker = "  (press Enter to apply)" if self.dirty else ""
            self._line("pending").show(f"{bar} {self.pending_layers} / {total}{marker}")
        self._line("experts").show(self._experts_text())
        self._line("devices").show(self._devices_text())
        if self.estimator is not None and total:
            self._request_estimate()
        else:
            self._line("estimate").show("")
        self._line("settings").show(
            f"ctx {self.n_ctx} · flash attn {'on' if self.flash_attn else 'off'} · "
            f"KV {self.kv_cache_type}"
        )
        self._line("warning").show(self.warning)
        self._line("status").show(self.status)
        hints = []
        if self.moe_layers:
            hints.append("↑/↓ expert layer in RAM · x experts all/none")
        if self.several_devices:
            hints.append("s split · m split mode · g main GPU")
        self._line("placement-hint").show(" · ".join(hints))

    def _experts_text(self) -> str:
        """``experts in RAM ███░░░░░ 12 / 24 layers · was 0`` for a mixture-of-experts model
        (``was``: the loaded value, while the pending one differs)."""
        if not self.moe_layers:
            return ""
        moe, total = self.pending_cpu_moe, self.moe_layers
        marker = "" if moe == self.current_cpu_moe else f" · was {self.current_cpu_moe}"
        return f"experts in RAM {_bar(moe, total, 8)} {moe} / {total} layers{marker}"

    def _devices_text(self) -> str:
        """``split 1:3 over RPC0, RPC1 · layer · main 0`` with two or more devices (the
        proportions, the split mode, the main GPU's index)."""
        if not self.several_devices:
            return ""
        names = ", ".join(self.devices)
        return (
            f"split {split_text(self.tensor_split)} over {names} · {self.split_mode} · "
            f"main {self.main_gpu}"
        )

    def _line(self, name: str) -> TextLine:
        return self.query_one(f".{name}", TextLine)

    def _request_estimate(self) -> None:
        """Estimate the pending settings in a thread (a new setting costs up to ~0.15 s)."""
        args = self.pending()
        estimator = self.estimator
        if estimator is None or args == self._estimate_args:
            return
        self._estimate_args = args

        def run() -> tuple[PlacementRequest, PlacementFigures | None]:
            return args, estimator(args)

        self.run_worker(run, thread=True, exclusive=True, group="estimate")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "estimate" or event.state != WorkerState.SUCCESS:
            return
        result: tuple[PlacementRequest, PlacementFigures | None] | None = event.worker.result
        if result is None:
            return
        args, est = result
        if args != self.pending():
            return
        self._line("estimate").show("" if est is None else estimate_text(est))

    def invalidate_estimate(self) -> None:
        """Forget the shown estimate (a new model or new free memory)."""
        self._estimate_args = None
        self.refresh_text()

    # ---- actions ------------------------------------------------------------------------------

    def action_step(self, delta: int) -> None:
        if self.total_layers:
            self.pending_layers = max(0, min(self.total_layers, self.pending_layers + delta))

    def action_step_percent(self, percent: int) -> None:
        if self.total_layers:
            step = max(1, round(self.total_layers * abs(percent) / 100))
            self.action_step(step if percent > 0 else -step)

    def action_set_none(self) -> None:
        self.pending_layers = 0

    def action_set_all(self) -> None:
        self.pending_layers = self.total_layers

    def action_auto(self) -> None:
        if self.auto_placement is None:
            self.status = "Auto needs the memory estimate"
            return
        choice = self.auto_placement(self.pending())
        if choice is None:
            self.status = "Auto: no estimate for this model"
            return
        self.pending_layers = max(0, min(self.total_layers, choice.offload_layers))
        if self.moe_layers:
            self.pending_cpu_moe = max(0, min(self.moe_layers, choice.n_cpu_moe))
        if self.several_devices and choice.tensor_split:
            self.tensor_split = choice.tensor_split
        self.status = f"Auto: {choice.reason}"
        self.refresh_text()

    def action_step_experts(self, delta: int) -> None:
        if self.moe_layers:
            self.pending_cpu_moe = max(0, min(self.moe_layers, self.pending_cpu_moe + delta))

    def action_toggle_experts(self) -> None:
        if self.moe_layers:
            full = self.pending_cpu_moe >= self.moe_layers
            self.pending_cpu_moe = 0 if full else self.moe_layers

    def action_edit_split(self) -> None:
        if self.several_devices:
            self.post_message(self.SplitRequested())

    def set_split(self, tensor_split: tuple[float, ...]) -> None:
        """A new pending split (``()``: by free memory), from the split dialog."""
        self.tensor_split = tensor_split
        self.refresh_text()

    def action_cycle_split_mode(self) -> None:
        if self.several_devices:
            index = SPLIT_MODES.index(self.split_mode) if self.split_mode in SPLIT_MODES else -1
            self.split_mode = SPLIT_MODES[(index + 1) % len(SPLIT_MODES)]
            self.refresh_text()

    def action_cycle_main_gpu(self) -> None:
        if self.several_devices:
            self.main_gpu = (self.main_gpu + 1) % len(self.devices)
            self.refresh_text()

    def action_cycle_ctx(self) -> None:
        larger = [size for size in CONTEXT_SIZES if size > self.n_ctx]
        self.n_ctx = larger[0] if larger else CONTEXT_SIZES[0]
        self.refresh_text()

    def action_toggle_flash(self) -> None:
        self.flash_attn = not self.flash_attn
        self.refresh_text()

    def action_cycle_kv(self) -> None:
        index = (
            KV_CACHE_TYPES.index(self.kv_cache_type) if self.kv_cache_type in KV_CACHE_TYPES else 0
        )
        self.kv_cache_type = KV_CACHE_TYPES[(index + 1) % len(KV_CACHE_TYPES)]
        self.refresh_text()

    def action_revert(self) -> None:
        loaded = self._loaded
        self.pending_layers = loaded.offload_layers
        self.pending_cpu_moe = n_cpu_moe_count(loaded.n_cpu_moe, self.moe_layers)
        self.n_ctx, self.flash_attn = loaded.n_ctx, loaded.flash_attn
        self.kv_cache_type = loaded.kv_cache_type
        self.tensor_split, self.split_mode = loaded.tensor_split, loaded.split_mode
        self.main_gpu = loaded.main_gpu
        self.refresh_text()

    def action_sweep(self) -> None:
        self.post_message(self.SweepRequested())

    def action_apply(self) -> None:
        if not self.total_layers:
            return
        layers: OffloadValue = (
            "all" if self.pending_layers >= self.total_layers else self.pending_layers
        )
        pending = self.pending()
        self.post_message(
            ApplyLoadSettings(
                layers,
                self.n_ctx,
                self.flash_attn,
                self.kv_cache_type,
                n_cpu_moe=pending.n_cpu_moe,
                tensor_split=pending.tensor_split,
                split_mode=pending.split_mode,
                main_gpu=pending.main_gpu,
            )
        )


def estimate_text(est: PlacementFigures) -> str:
    """``est. VRAM 1.2 GiB · RAM 3.4 GiB · fits``; with several devices each one's share
    (``est. RPC0 300 MiB · RPC1 900 MiB · RAM …``); without a GPU only RAM."""
    if est.fits is None and not est.gpu_bytes:  # no GPU: all of it is RAM
        return f"est. RAM {human_bytes(est.cpu_bytes)}"
    fits = "" if est.fits is None else (" · fits" if est.fits else " · may not fit")
    if len(est.device_bytes) > 1:
        shares = " · ".join(f"{name} {human_bytes(size)}" for name, size in est.device_bytes)
        return f"est. {shares} · RAM {human_bytes(est.cpu_bytes)}{fits}"
    return f"est. VRAM {human_bytes(est.gpu_bytes)} · RAM {human_bytes(est.cpu_bytes)}{fits}"


def progress_bar(progress: float, width: int) -> Content:
    """``━━━━━━━━━━━━━━━━━━━━━━━  45%`` in ``width`` cells: done in the accent colour."""
    share = min(1.0, max(0.0, progress))
    label = f" {share * 100:3.0f}%"
    cells = max(1, width - len(label))
    done = round(cells * share)
    return Content.assemble(
        ("━" * done, "$accent"), ("━" * (cells - done), "$foreground 20%"), label
    )


def _bar(value: int, total: int, width: int) -> str:
    filled = round(width * value / total) if total else 0
    return "█" * filled + "░" * (width - filled)
