"""The mixture-of-experts feed-forward block of llama.cpp's graphs (build_moe_ffn), as shapes.

Router logits, softmax, the top-k experts (argsort and a view of its first k columns), their
routing weights (renormalised and scaled where the architecture says so), then the chosen experts'
gate, up and down matrices through ``ggml_mul_mat_id``, weighted and summed; a shared expert with
its sigmoid gate is added after (qwen2moe). Nodes are made in the order llama-graph.cpp makes
them, so :class:`~tui_llm.fit.ggml_graph.Graph` orders them as ggml does.
"""

from __future__ import annotations

from dataclasses import dataclass

from tui_llm.fit.ggml_graph import Graph, Ops, Tensor


@dataclass(frozen=True)
class MoeShape:
    """One block's experts: how many, how many each token uses, their width; the shared expert."""

    n_expert: int
    n_expert_used: int
    n_ff_exp: int
    has_gate: bool
    norm_weights: bool  # routing weights renormalised over the chosen experts
    weights_scale: float = 0.0  # 0 or 1: not scaled
    n_ff_shexp: int = 0  # 0: no shared expert
    shexp_gate: bool = False  # the shared expert's output is scaled by sigmoid(gate_inp_shexp)


def moe_ffn(
    ops: Ops,
    graph: Graph,
    moe: MoeShape,
    il: int,
    cur: Tensor,
    dev: int,
    experts_dev: int,
    matrix_bytes: dict[str, int],
) -> Tensor:
    """The block's FFN output [n_embd, n_tokens] for the normed input ``cur`` [n_embd, n_tokens].

    ``dev`` holds the router and shared expert, ``experts_dev`` the expert matrices
    (the CPU for a layer whose experts stay in host memory).
    """
    n_embd, n_tokens = cur.ne[0], cur.ne[1]
    k = moe.n_expert_used
    router = ops.weight(
        f"ffn_gate_inp-{il}", (n_embd, moe.n_expert), dev, matrix_bytes.get("gate_inp")
    )
    probs = ops.unary_like("soft_max", ops.mul_mat(router, cur))
    order = ops.argsort(probs)
    chosen = ops.view(order, (k, n_tokens), (order.nb[1], order.nb[2], order.nb[3]))
    weights = ops.get_rows(ops.reshape(probs, (1, moe.n_expert, n_tokens)), chosen)
    if moe.norm_weights:
        flat = ops.reshape(weights, (k, n_tokens))
        total = ops.unary_like("clamp", ops.sum_rows(flat))
        flat = ops.unary_like("div", flat, total)
        weights = ops.reshape(flat, (1, k, n_tokens))
    if moe.weights_scale not in (0.0, 1.0):
        weights = ops.unary_like("scale", weights)
    graph.expand(weights)

    tokens = ops.reshape(cur, (n_embd, 1, n_tokens))

    def experts(role: str, ne: tuple[int, int, int]) -> Tensor:
        return ops.weight(f"ffn_{role}-{il}", ne, experts_dev, matrix_bytes.get(role))

    up_w = experts("up_exps", (n_embd, moe.n_ff_exp, moe.n_expert))
    up = ops.mul_mat_id(up_w, tokens, chosen)
    if moe.has_gate:
        gate_w = experts("gate_exps", (n_embd, moe.n_ff_exp, moe.n_expert))
        act = ops.glu(ops.mul_mat_id(gate_w, tokens, chosen), up)
    else:
        act = ops.unary_like("unary", up)
    down_w = experts("down_exps", (moe.n_ff_exp, n_embd, moe.n_expert))
    weighted = ops.unary_like("mul", ops.mul_mat_id(down_w, act, chosen), weights)
    step = weighted.nb[2]
    views = [ops.view(weighted, (n_embd, n_tokens), (step, step * n_tokens, step * n_tokens))]
    views += [
        ops.view(weighted, (n_embd, n_tokens), (step, step * n_tokens, step * n_tokens))
        for _ in range(1, k)
    ]
    for view in views:
        graph.expand(view)
    out = views[0]
    for view in views[1:]:
        out = ops.unary_like("add", out, view)
    if k == 1:
        out = ops.cont(out)
    if moe.n_ff_shexp:
        out = ops.unary_like("add", out, _shared_expert(ops, moe, il, cur, dev, matrix_bytes))
    return out


def _shared_expert(
    ops: Ops, moe: MoeShape, il: int, cur: Tensor, dev: int, matrix_bytes: dict[str, int]
) -> Tensor:
    """qwen2moe's shared expert: a gated SiLU FFN on every token, scaled by its sigmoid gate."""
    n_embd, width = cur.ne[0], moe.n_ff_shexp
    up_w = ops.weight(f"ffn_up_shexp-{il}", (n_embd, width), dev, matrix_bytes.get("up_shexp"))
    gate_w = ops.weight(
        f"ffn_gate_shexp-{il}", (n_embd, width), dev, matrix_bytes.get("gate_shexp")
    )
    down_w = ops.weight(
        f"ffn_down_shexp-{il}", (width, n_embd), dev, matrix_bytes.get("down_shexp")
    )
    up = ops.mul_mat(up_w, cur)
    act = ops.glu(ops.mul_mat(gate_w, cur), up)
    out = ops.mul_mat(down_w, act)
    if not moe.shexp_gate:
        return out
    gate_inp = ops.weight(
        f"ffn_gate_inp_shexp-{il}", (n_embd,), dev, matrix_bytes.get("gate_inp_shexp")
    )
    gate = ops.unary_like("unary", ops.mul_mat(gate_inp, cur))
    return ops.unary_like("mul", out, gate)
