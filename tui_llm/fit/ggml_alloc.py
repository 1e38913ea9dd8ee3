"""ggml's backend scheduler and graph allocator, replayed over tensor shapes.

llama.cpp sizes its compute buffers by building the worst-case graph and letting ggml-alloc place
every intermediate tensor (reusing memory as tensors die, in place where an op allows it), per
backend after the scheduler has split the graph between the GPU and the CPU. No formula matches
that: fragmentation, in-place reuse and copies between backends all move the peak. So this module
follows the same algorithms: ggml-alloc.c's best-fit allocator and ggml-backend.cpp's backend
assignment passes and split inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tui_llm.fit.ggml_graph import TYPE_SIZES, VIEW_OPS, Graph, Ops, Tensor, pad, row_bytes

# ops ggml-alloc may compute in place over a parent (ggml_op_can_inplace)
_INPLACE_OPS = frozenset(
    {"scale", "add", "sub", "mul", "div", "unary", "rope", "rms_norm", "soft_max"}
)


@dataclass(frozen=True)
class Backend:
    """One scheduler backend: the last one is the CPU."""

    name: str
    alignment: int
    host: bool
    offload_min_batch: int | None = None  # GPUs that take over big CPU-weight ops (CUDA: 32)
    pads_quantized_rows: bool = False

    def alloc_size(self, tensor: Tensor) -> int:
        size = tensor.nbytes()
        quantized = TYPE_SIZES[tensor.type][0] > 1
        if self.pads_quantized_rows and quantized and tensor.ne[0] % 512:
            size += row_bytes(tensor.type, 512 - tensor.ne[0] % 512)
        return size

    def offload_op(self, tensor: Tensor) -> bool:
        if self.offload_min_batch is None or tensor.op == "get_rows":
            return False
        if tensor.op == "mul_mat":
            batch = tensor.ne[1]
        elif tensor.op in ("rope", "mul_mat_id"):
            batch = tensor.ne[2]
        else:
            batch = tensor.nrows()
        return batch >= self.offload_min_batch


# ---- the dynamic allocator (ggml_dyn_tallocr) ------------------------------------------------


class DynAllocator:
    """Best-fit over free blocks sorted by offset, the last block growing the buffer."""

    def __init__(self, alignment: int) -> None:
        self.alignment = alignment
        self.blocks: list[list[int]] = [[0, 1 << 62]]
        self.max_size = 0

    def alloc(self, size: int) -> int:
        size = pad(size, self.alignment)
        best = -1
        best_size = 1 << 63
        for i in range(len(self.blocks) - 1):
            block_size = self.blocks[i][1]
            if size <= block_size <= best_size:
                best, best_size = i, block_size
        if best == -1:
            best = len(self.blocks) - 1
        block = self.blocks[best]
        offset = block[0]
        block[0] += size
        block[1] -= size
        if block[1] == 0:
            del self.blocks[best]
        self.max_size = max(self.max_size, offset + size)
        return offset

    def free(self, offset: int, size: int) -> None:
        size = pad(size, self.alignment)
        blocks = self.blocks
        for i, block in enumerate(blocks):
            if block[0] + block[1] == offset:
                block[1] += size
                if i + 1 < len(blocks) and block[0] + block[1] == blocks[i + 1][0]:
                    block[1] += blocks[i + 1][1]
                    del blocks[i + 1]
                return
            if offset + size == block[0]:
                block[0] = offset
                block[1] += size
                if i > 0 and blocks[i - 1][0] + blocks[i - 1][1] == block[0]:
                    blocks[i - 1][1] += block[1]
                    del blocks[i]
                return
        position = 0
        while position < len(blocks) and blocks[position][0] < offset:
            position += 1
        blocks.insert(position, [offset, size])


@dataclass
class _Slot:
    n_children: int = 0
    n_views: int = 0
    allocated: bool = False
    buffer: int = -1
    offset: int = 0


def allocate(
    backends: Sequence[Backend],
    nodes: Sequence[Tensor],
    node_backends: Sequence[int],
    leafs: Sequence[Tensor],
    leaf_backends: Sequence[int],
) -> list[int]:
    """The peak bytes of each backend's compute buffer for one graph (ggml_gallocr_reserve_n)."""
    allocators = [DynAllocator(b.alignment) for b in backends]
    slots: dict[int, _Slot] = {}

    def slot(t: Tensor) -> _Slot:
        found = slots.get(id(t))
        if found is None:
            found = slots[id(t)] = _Slot()
        return found

    def external(t: Tensor) -> bool:
        return t.buffer is not None or (t.view_src is not None and t.view_src.buffer is not None)

    def is_allocated(t: Tensor) -> bool:
        return external(t) or slot(t).allocated

    def same_layout(a: Tensor, b: Tensor) -> bool:
        return a.type == b.type and a.ne == b.ne and a.nb == b.nb

    def allocate_node(node: Tensor, buffer_id: int) -> None:
        if is_allocated(node) or node.is_view:
            return
        hn = slot(node)
        hn.allocated = True
        if node.op in _INPLACE_OPS:
            for parent in node.src:
                if parent is None or not slot(parent).allocated or external(parent):
                    continue
                if parent.is_output or (parent.view_src is not None and parent.view_src.is_output):
                    continue
                if not same_layout(node, parent):
                    continue
                p_hn = slot(parent)
                if p_hn.n_children == 1 and p_hn.n_views == 0 and not parent.is_view:
                    hn.buffer, hn.offset = p_hn.buffer, p_hn.offset
                    p_hn.allocated = False
                    backend = backends[p_hn.buffer]
                    parent_size = pad(backend.alloc_size(parent), backend.alignment)
                    node_size = pad(backends[hn.buffer].alloc_size(node), backend.alignment)
                    if parent_size > node_size:
                        allocators[p_hn.buffer].free(
                            p_hn.offset + node_size, parent_size - node_size
                        )
                    return
        hn.buffer = buffer_id
        hn.offset = allocators[buffer_id].alloc(backends[buffer_id].alloc_size(node))

    def free_node(node: Tensor) -> None:
        if node.is_output:
            return
        hn = slot(node)
        allocators[hn.buffer].free(hn.offset, backends[hn.buffer].alloc_size(node))
        hn.allocated = False

    for leaf, buffer_id in zip(leafs, leaf_backends, strict=True):
        allocate_node(leaf, buffer_id)
    for node, buffer_id in zip(nodes, node_backends, strict=True):
        if node.is_view and node.op != "none":
            assert node.view_src is not None
            slot(node.view_src).n_views += 1
        if node.is_input:
            allocate_node(node, buffer_id)
        for src in node.src:
            if src is None:
                continue
            slot(src).n_children += 1
            if src.is_input:
                allocate_node(src, buffer_id)
    for node, buffer_id in zip(nodes, node_backends, strict=True):
        for parent in node.src:
            if parent is not None:
                allocate_node(parent, buffer_id)
        allocate_node(node, buffer_id)
        for parent in node.src:
            if parent is None:
                continue
            p_hn = slot(parent)
            p_hn.n_children -= 1
            if p_hn.n_children == 0 and p_hn.n_views == 0:
                if parent.view_src is not None:
                    v_hn = slot(parent.view_src)
                    v_hn.n_views -= 1
                    if v_hn.n_views == 0 and v_hn.n_children == 0 and v_hn.allocated:
                        free_node(parent.view_src)
                elif p_hn.allocated:
                    free_node(parent)
    return [a.max_size for a in allocators]


# ---- the scheduler (ggml_backend_sched_split_graph) ------------------------------------------


def _supports_buffer(backends: Sequence[Backend], t: Tensor, backend_id: int) -> bool:
    """Whether ``backend_id`` reads ``t`` where it lives (ggml_backend_sched_buffer_supported)."""
    buffer = t.view_src.buffer if t.view_src is not None else t.buffer
    if buffer is not None:
        owner = buffer.backend
    else:
        owner = t.backend
        if owner == -1 and t.view_src is not None:
            owner = t.view_src.backend
        if owner == -1:
            return False
    if owner == backend_id:
        return True
    return backends[owner].host and backends[backend_id].host


def _from_buffer(t: Tensor) -> int:
    buffer = t.view_src.buffer if t.view_src is not None else t.buffer
    return -1 if buffer is None else buffer.backend


def _pass1(backends: Sequence[Backend], t: Tensor, op_offload: bool) -> int:
    """ggml_backend_sched_backend_id_from_cur."""
    owner = _from_buffer(t)
    if owner != -1:
        return owner
    if t.is_input:
        return len(backends) - 1
    if t.op in ("rope", "flash_attn_ext"):
        return -1
    cpu = len(backends) - 1
    for src in t.src:
        if src is None or src.buffer is None or not src.buffer.weights:
            continue
        owner = src.buffer.backend
        if op_offload and owner == cpu:
            for b in range(cpu):
                if backends[b].offload_op(t):
                    return b
        return owner
    return -1


def schedule(
    backends: Sequence[Backend], graph: Graph, op_offload: bool, n_copies: int = 1
) -> tuple[list[Tensor], list[int], list[Tensor], list[int]]:
    """Assign every node a backend and insert input copies between splits.

    Returns the allocation graph's nodes and leafs with their backend ids, as
    ggml_backend_sched_split_graph builds ``sched->graph``. ``n_copies`` > 1 is pipeline
    parallelism: every graph input and every split input is kept in that many copies, allocated
    before everything else and never freed.
    """
    nodes = graph.nodes
    cpu = len(backends) - 1
    for leaf in graph.leafs:
        if leaf.backend == -1:
            leaf.backend = _pass1(backends, leaf, op_offload)
    for node in nodes:
        if node.backend == -1:
            node.backend = _pass1(backends, node, op_offload)
    computing = [n for n in nodes if n.op not in VIEW_OPS]

    def expand(order: Iterable[Tensor], skip_cpu: bool) -> None:
        current = -1
        for node in order:
            if node.backend != -1:
                current = -1 if skip_cpu and node.backend == cpu else node.backend
            elif current != -1:
                node.backend = current

    expand(computing, True)
    expand(reversed(computing), True)
    expand(computing, False)
    expand(reversed(computing), False)
    for node in computing:
        if node.backend != -1:
            continue
        best = -1
        for b in range(len(backends)):
            supported = sum(
                1
                for s in node.src
                if s is not None
                and (s.backend != -1 or (s.view_src is not None and s.view_src.backend != -1))
                and _supports_buffer(backends, s, b)
            )
            if supported > best:
                best, node.backend = supported, b
    for node in nodes:
        if node.view_src is not None and node.backend == -1:
            node.backend = node.view_src.backend
        for src in node.src:
            if src is not None and src.backend == -1:
                src.backend = src.view_src.backend if src.view_src is not None else node.backend
        if node.backend == -1:
            node.backend = 0

    # pass 5: splits and the copies of their inputs
    ops = Ops()
    copies: dict[tuple[int, int], Tensor] = {}
    out_nodes: list[Tensor] = []
    out_backends: list[int] = []
    pending: list[Tensor] = []
    split_inputs: list[Tensor] = []
    input_leafs: list[tuple[Tensor, int]] = []  # graph inputs' copies (pipeline parallelism)
    copy_leafs: list[tuple[Tensor, int]] = []  # split inputs' copies (pipeline parallelism)
    copied_inputs: set[int] = set()

    def copy_input(source: Tensor) -> None:
        if id(source) in copied_inputs:
            return
        copied_inputs.add(id(source))
        source.is_output = True
        for c in range(n_copies):
            kept = source if c == 0 else duplicate(source, source.backend, f"{source.name}#{c}")
            kept.is_input = kept.is_output = True
            input_leafs.append((kept, source.backend))

    def duplicate(source: Tensor, backend: int, name: str) -> Tensor:
        copy = ops.new(source.type, source.ne, name)
        copy.nb = source.nb
        copy.fixed_size = source.fixed_size
        copy.backend = backend
        return copy

    split_backend = next((n.backend for n in computing), cpu)

    def flush() -> None:
        for source in split_inputs:
            dep = Tensor(f"{source.name} (dep)", "none", source.type, source.ne, source.nb)
            dep.src = [source]
            dep.view_src = source.view_src if source.view_src is not None else source
            out_nodes.append(dep)
            out_backends.append(source.backend)
            out_nodes.append(copies[(id(source), split_backend)])
            out_backends.append(split_backend)
        for node in pending:
            out_nodes.append(node)
            out_backends.append(node.backend)
        pending.clear()
        split_inputs.clear()

    for node in nodes:
        if node.op in VIEW_OPS:
            pending.append(node)
            continue
        new_split = node.backend != split_backend
        if not new_split and split_inputs:
            for src in node.src:
                if (
                    src is not None
                    and src.buffer is not None
                    and src.buffer.weights
                    and src.backend != split_backend
                    and not _supports_buffer(backends, src, split_backend)
                ):
                    new_split = True
                    break
        if new_split:
            flush()
            split_backend = node.backend
        for j, src in enumerate(node.src):
            if src is None:
                continue
            if n_copies > 1 and src.is_input:
                copy_input(src)
            if src.backend != split_backend and not _supports_buffer(backends, src, split_backend):
                key = (id(src), split_backend)
                if key not in copies:
                    made = [
                        duplicate(src, split_backend, f"{src.name}#copy{c}")
                        for c in range(n_copies)
                    ]
                    if n_copies > 1:
                        for copy in made:
                            copy.is_input = copy.is_output = True
                            copy_leafs.append((copy, split_backend))
                    copies[key] = made[0]
                    split_inputs.append(src)
                node.src[j] = copies[key]
        pending.append(node)
    flush()
    if n_copies > 1:  # inputs the graph holds but no node reads (llama.cpp's inp_embd)
        for leaf in graph.leafs:
            if leaf.is_input:
                copy_input(leaf)
    leafs = [*input_leafs, *copy_leafs, *((leaf, leaf.backend) for leaf in graph.leafs)]
    return out_nodes, out_backends, [leaf for leaf, _ in leafs], [b for _, b in leafs]
