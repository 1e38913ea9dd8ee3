"""The decoder graph llama.cpp reserves compute buffers with, rebuilt from a model's shapes.

This follows src/models/llama.cpp and llama-graph.cpp (build_inp_embd, build_norm, build_qkv,
build_attn with the KV cache store, build_attn_mha, build_ffn, the output head) in the order
ggml adds nodes, for the two graphs llama.cpp reserves: prompt processing (one micro-batch) and
token generation (one token). Mixture-of-experts blocks (qwen3moe, qwen2moe, llama with experts)
take their FFN from :mod:`tui_llm.fit.moe_graph`. Architectures that differ from this shape
(recurrent, sliding-window-only details) are sized with the same graph as an approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tui_llm.fit.ggml_alloc import Backend, allocate, schedule
from tui_llm.fit.ggml_graph import Buffer, Graph, Ops, Tensor, contiguous_nb, row_bytes
from tui_llm.fit.moe_graph import MoeShape, moe_ffn

__all__ = ["GraphSettings", "GraphShape", "LayerShape", "MoeShape", "Placement", "compute_buffers"]


@dataclass(frozen=True)
class LayerShape:
    """One repeating block's attention and feed-forward shape, and its matrices' byte sizes."""

    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_ff: int
    has_gate: bool
    fused_qkv: bool
    qkv_bias: bool
    out_bias: bool
    qk_norm: bool
    matrix_bytes: tuple[tuple[str, int], ...]  # role ("q", "ffn_up", ...) -> bytes
    moe: MoeShape | None = None  # None: a dense FFN

    def bytes_of(self, role: str) -> int | None:
        return dict(self.matrix_bytes).get(role)


@dataclass(frozen=True)
class GraphShape:
    """What the graph builder needs to know about a model."""

    n_embd: int
    n_vocab: int
    layers: tuple[LayerShape, ...]
    has_rope_freqs: bool
    output_bytes: int
    token_embd_bytes: int


@dataclass(frozen=True)
class GraphSettings:
    """The context settings that shape the reserved graphs."""

    kv_size: int
    n_ubatch: int
    n_outputs: int
    type_k: str
    type_v: str
    flash_attn: bool
    offload_kqv: bool
    op_offload: bool
    n_copies: int = 1  # 4 with pipeline parallelism (several devices, everything offloaded)


@dataclass(frozen=True)
class Placement:
    """Which backend holds each block's weights, its KV cache, the output layer, and each
    block's expert matrices (``None``: with the block)."""

    layer_backend: tuple[int, ...]
    kv_backend: tuple[int, ...]
    output_backend: int
    expert_backend: tuple[int, ...] | None = None

    def experts_of(self, il: int) -> int:
        if self.expert_backend is None:
            return self.layer_backend[il]
        return self.expert_backend[il]


_FLOAT_TYPES = ("f32", "f16", "bf16")


def _rot_size(head_dim: int) -> int:
    """The Hadamard rotation size llama.cpp uses for quantized K (build_input_k_rot)."""
    size = 64
    while head_dim % (size * 2) == 0:
        size *= 2
    return size


@dataclass
class _Inputs:
    """The graph inputs every block reads."""

    pos: Tensor
    k_idxs: Tensor
    v_idxs: Tensor
    kq_mask: Tensor
    out_ids: Tensor
    k_rot: Tensor | None
    v_rot: Tensor | None
    rope_freqs: dict[int, Tensor]


class _Builder:
    """Adds one reserve graph's tensors in the order llama.cpp's graph code does."""

    def __init__(self, shape: GraphShape, settings: GraphSettings, n_tokens: int, cpu: int) -> None:
        self.ops = Ops()
        self.graph = Graph()
        self.shape = shape
        self.settings = settings
        self.n_tokens = n_tokens
        self.cpu = cpu
        self.force_norms = False

    def build(self, placement: Placement, n_outputs: int, force_norm_backends: bool) -> Graph:
        ops, graph, shape = self.ops, self.graph, self.shape
        embd_bytes = shape.token_embd_bytes
        tok_embd = ops.weight("token_embd", (shape.n_embd, shape.n_vocab), self.cpu, embd_bytes)
        tokens = ops.input("i32", (self.n_tokens,), "inp_tokens")
        cur = ops.get_rows(tok_embd, tokens, "inp_get_rows")
        graph.expand(cur)
        graph.expand(ops.input("f32", (shape.n_embd, self.n_tokens), "inp_embd"))
        inputs = self.inputs(placement, n_outputs)
        self.force_norms = force_norm_backends
        last = len(shape.layers) - 1
        for il, layer in enumerate(shape.layers):
            dev = placement.layer_backend[il]
            residual = cur
            cur = self.norm(cur, f"attn_norm-{il}", il, dev, force_norm_backends)
            cur = self.attention(layer, il, cur, dev, placement.kv_backend[il], inputs)
            if il == last:
                cur = ops.get_rows(cur, inputs.out_ids)
                residual = ops.get_rows(residual, inputs.out_ids)
            ffn_inp = ops.unary_like("add", cur, residual)
            cur = self.norm(ffn_inp, f"ffn_norm-{il}", il, dev, force_norm_backends)
            if layer.moe is not None:
                experts_dev = placement.experts_of(il)
                matrices = dict(layer.matrix_bytes)
                ffn_out = moe_ffn(ops, graph, layer.moe, il, cur, dev, experts_dev, matrices)
            else:
                ffn_out = self.ffn(layer, il, cur, dev)
            cur = ops.unary_like("add", ffn_out, ffn_inp)
        out_dev = placement.output_backend
        cur = ops.unary_like("rms_norm", cur)
        cur = ops.unary_like("mul", cur, ops.weight("output_norm", (shape.n_embd,), out_dev))
        cur.is_output = True
        head = ops.weight("output", (shape.n_embd, shape.n_vocab), out_dev, shape.output_bytes)
        logits = ops.mul_mat(head, cur)
        logits.is_output = True
        graph.expand(logits)
        return graph

    def inputs(self, placement: Placement, n_outputs: int) -> _Inputs:
        ops, settings, n_tokens = self.ops, self.settings, self.n_tokens
        layers = self.shape.layers
        v_trans = not settings.flash_attn
        pos = ops.input("i32", (n_tokens,), "inp_pos")
        k_idxs = ops.input("i64", (n_tokens,), "attn_inp_k_idxs")
        v_width = max(layer.n_head_kv * layer.head_dim_v for layer in layers)
        v_idxs = ops.input("i64", (n_tokens * v_width if v_trans else n_tokens,), "v_idxs")
        mask_type = "f16" if settings.flash_attn else "f32"
        kq_mask = ops.input(mask_type, (settings.kv_size, n_tokens, 1, 1), "attn_inp_kq_mask")
        head_k = {layer.head_dim_k for layer in layers}
        head_v = {layer.head_dim_v for layer in layers}
        k_rot = v_rot = None
        if settings.type_k not in _FLOAT_TYPES and len(head_k) == 1 and min(head_k) % 64 == 0:
            size = _rot_size(min(head_k))
            k_rot = ops.input("f32", (size, size), "attn_inp_k_rot")
        if settings.type_v not in _FLOAT_TYPES and len(head_v) == 1 and min(head_v) % 64 == 0:
            v_rot = ops.input("f32", (64, 64), "attn_inp_v_rot")
        out_ids = ops.input("i32", (n_outputs,), "out_ids")
        rope_freqs: dict[int, Tensor] = {}
        if self.shape.has_rope_freqs:
            half = layers[0].head_dim_k // 2
            for backend in sorted(set(placement.layer_backend)):
                rope_freqs[backend] = ops.weight("rope_freqs", (half,), backend)
        return _Inputs(pos, k_idxs, v_idxs, kq_mask, out_ids, k_rot, v_rot, rope_freqs)

    def norm(
        self, cur: Tensor, weight: str, il: int, dev: int, force_backend: bool, width: int = 0
    ) -> Tensor:
        """build_norm: RMS norm times a weight; llama.cpp pins "norm" to the layer's device
        for single-token batches and full offload (llama_context::graph_get_cb)."""
        ops = self.ops
        normed = ops.unary_like("rms_norm", cur, name=f"norm-{il}")
        if force_backend:
            normed.backend = dev
        scale = ops.weight(weight, (width or self.shape.n_embd,), dev)
        return ops.unary_like("mul", normed, scale)

    def hadamard(self, cur: Tensor, rot: Tensor) -> Tensor:
        ops = self.ops
        size = rot.ne[0]
        count = cur.ne[0] * cur.ne[1] * cur.ne[2] * cur.ne[3]
        if cur.nb == contiguous_nb(cur.type, cur.ne):
            flat = ops.reshape(cur, (size, count // size))
        else:
            flat = ops.cont(cur, (size, count // size, 1, 1))
        return ops.reshape(ops.mul_mat(rot, flat), cur.ne)

    def rows(self, cur: Tensor, width: int) -> Tensor:
        """A [width, n_tokens] view of a [head, heads, n_tokens] tensor (cpy_k, cpy_v)."""
        stride = cur.nb[2]
        n_tokens = self.n_tokens
        return self.ops.view(cur, (width, n_tokens), (stride, stride * n_tokens, stride * n_tokens))

    def qkv(self, layer: LayerShape, il: int, cur: Tensor, dev: int) -> list[Tensor]:
        ops = self.ops
        n_embd, n_tokens = self.shape.n_embd, self.n_tokens
        heads = (
            ("q", layer.head_dim_k, layer.n_head),
            ("k", layer.head_dim_k, layer.n_head_kv),
            ("v", layer.head_dim_v, layer.n_head_kv),
        )
        if layer.fused_qkv:
            width = sum(size * count for _, size, count in heads)
            wqkv = ops.weight(f"wqkv-{il}", (n_embd, width), dev, layer.bytes_of("qkv"))
            qkv = ops.mul_mat(wqkv, cur)
            if layer.qkv_bias:
                qkv = ops.unary_like("add", qkv, ops.weight(f"bqkv-{il}", (width,), dev))
            row = qkv.nb[1]
            return [
                ops.view(qkv, (size, count, n_tokens), (4 * size, row, row * n_tokens))
                for _, size, count in heads
            ]
        out = []
        for role, size, count in heads:
            weight = ops.weight(f"w{role}-{il}", (n_embd, size * count), dev, layer.bytes_of(role))
            proj = ops.mul_mat(weight, cur)
            if layer.qkv_bias:
                bias = ops.weight(f"b{role}-{il}", (size * count,), dev)
                proj = ops.unary_like("add", proj, bias)
            out.append(ops.reshape(proj, (size, count, n_tokens)))
        return out

    def attention(
        self, layer: LayerShape, il: int, cur: Tensor, dev: int, kv_dev: int, inputs: _Inputs
    ) -> Tensor:
        ops, graph, settings = self.ops, self.graph, self.settings
        n_tokens, n_kv = self.n_tokens, settings.kv_size
        q_cur, k_cur, v_cur = self.qkv(layer, il, cur, dev)
        if layer.qk_norm:
            for_q = self.norm(q_cur, f"q_norm-{il}", il, dev, self.force_norms, layer.head_dim_k)
            for_k = self.norm(k_cur, f"k_norm-{il}", il, dev, self.force_norms, layer.head_dim_k)
            q_cur, k_cur = for_q, for_k
        freqs = inputs.rope_freqs.get(dev)
        q_cur = ops.unary_like("rope", q_cur, inputs.pos, freqs)
        k_cur = ops.unary_like("rope", k_cur, inputs.pos, freqs)
        if inputs.k_rot is not None:
            q_cur = self.hadamard(q_cur, inputs.k_rot)
            k_cur = self.hadamard(k_cur, inputs.k_rot)
        if inputs.v_rot is not None:
            v_cur = self.hadamard(v_cur, inputs.v_rot)
        graph.expand(q_cur)
        graph.expand(v_cur)
        graph.expand(k_cur)

        # store this batch's K and V in the cache (llama_kv_cache::cpy_k, cpy_v)
        n_k = layer.n_head_kv * layer.head_dim_k
        n_v = layer.n_head_kv * layer.head_dim_v
        tk, tv = settings.type_k, settings.type_v
        k_cache = ops.new(tk, (n_k, n_kv), f"cache_k_l{il}")
        k_cache.buffer = Buffer(kv_dev, weights=False)
        v_cache = ops.new(tv, (n_v, n_kv), f"cache_v_l{il}")
        v_cache.buffer = Buffer(kv_dev, weights=False)
        graph.expand(ops.set_rows(k_cache, self.rows(k_cur, n_k), inputs.k_idxs))
        if settings.flash_attn:
            graph.expand(ops.set_rows(v_cache, self.rows(v_cur, n_v), inputs.v_idxs))
        else:
            v_rows = ops.reshape(ops.reshape(v_cur, (n_v, n_tokens)), (1, n_v * n_tokens))
            v_flat = ops.reshape(v_cache, (1, n_v * n_kv))
            graph.expand(ops.set_rows(v_flat, v_rows, inputs.v_idxs))

        # read the whole cache back (get_k, get_v) and attend (build_attn_mha)
        k_strides = (row_bytes(tk, layer.head_dim_k), row_bytes(tk, n_k), row_bytes(tk, n_k * n_kv))
        k = ops.view(k_cache, (layer.head_dim_k, layer.n_head_kv, n_kv, 1), k_strides)
        if settings.flash_attn:
            v_shape = (layer.head_dim_v, layer.n_head_kv, n_kv, 1)
            v_strides = (
                row_bytes(tv, layer.head_dim_v),
                row_bytes(tv, n_v),
                row_bytes(tv, n_v * n_kv),
            )
        else:
            v_shape = (n_kv, layer.n_head_kv, layer.head_dim_v, 1)
            v_strides = (
                row_bytes(tv, n_kv * layer.head_dim_v),
                row_bytes(tv, n_kv),
                row_bytes(tv, n_kv * n_v),
            )
        v = ops.view(v_cache, v_shape, v_strides)
        q = ops.view(q_cur, q_cur.ne, (q_cur.nb[1], q_cur.nb[2], q_cur.nb[2] * q_cur.ne[2]))
        q = ops.permute(q, (0, 2, 1, 3))
        k = ops.permute(k, (0, 2, 1, 3))
        v = ops.permute(v, (0, 2, 1, 3))
        if settings.flash_attn:
            fa = ops.flash_attn(q, k, v, inputs.kq_mask)
            attn = ops.reshape(fa, (fa.ne[0] * fa.ne[1], fa.ne[2] * fa.ne[3]))
        else:
            kq = ops.unary_like("soft_max", ops.mul_mat(k, q), inputs.kq_mask)
            merged = ops.permute(ops.mul_mat(v, kq), (0, 2, 1, 3))
            flat = (merged.ne[0] * merged.ne[1], merged.ne[2] * merged.ne[3], 1, 1)
            attn = ops.cont(merged, flat)
            if not settings.offload_kqv:
                attn.backend = self.cpu
        graph.expand(attn)
        if inputs.v_rot is not None:
            attn = self.hadamard(attn, inputs.v_rot)
        width = layer.n_head * layer.head_dim_v
        wo = ops.weight(f"wo-{il}", (width, self.shape.n_embd), dev, layer.bytes_of("o"))
        out = ops.mul_mat(wo, attn)
        if layer.out_bias:
            out = ops.unary_like("add", out, ops.weight(f"bo-{il}", (self.shape.n_embd,), dev))
        return out

    def ffn(self, layer: LayerShape, il: int, cur: Tensor, dev: int) -> Tensor:
        ops = self.ops
        n_embd, n_ff = self.shape.n_embd, layer.n_ff
        up = ops.mul_mat(ops.weight(f"ffn_up-{il}", (n_embd, n_ff), dev, layer.bytes_of("up")), cur)
        if layer.has_gate:
            gate_w = ops.weight(f"ffn_gate-{il}", (n_embd, n_ff), dev, layer.bytes_of("gate"))
            act = ops.glu(ops.mul_mat(gate_w, cur), up)
        else:
            act = ops.unary_like("unary", up)
        down = ops.weight(f"ffn_down-{il}", (n_ff, n_embd), dev, layer.bytes_of("down"))
        return ops.mul_mat(down, act)


def compute_buffers(
    shape: GraphShape,
    settings: GraphSettings,
    backends: Sequence[Backend],
    placement: Placement,
) -> list[int]:
    """Compute buffer bytes per backend, as llama.cpp's sched_reserve leaves them.

    llama.cpp reserves the prompt graph, then the one-token graph, then the prompt graph again;
    a buffer only ever grows, so each ends at the larger of the two peaks.
    """
    cpu = len(backends) - 1
    full_offload = cpu not in placement.layer_backend and placement.output_backend != cpu
    sizes = [0] * len(backends)
    for n_tokens, n_outputs in ((settings.n_ubatch, settings.n_outputs), (1, 1)):
        builder = _Builder(shape, settings, n_tokens, cpu)
        forced = n_tokens < 32 or full_offload
        graph = builder.build(placement, n_outputs, force_norm_backends=forced)
        nodes, node_ids, leafs, leaf_ids = schedule(
            backends, graph, settings.op_offload, settings.n_copies
        )
        peaks = allocate(backends, nodes, node_ids, leafs, leaf_ids)
        sizes = [max(a, b) for a, b in zip(sizes, peaks, strict=True)]
    return sizes
