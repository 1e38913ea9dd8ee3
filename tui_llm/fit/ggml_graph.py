"""ggml tensors and graphs as shapes only: enough to replay how llama.cpp allocates them.

Tensors carry ggml's type, shape, strides, sources and view source; ``Ops`` makes them as ggml's
operations do (same output shapes and types), and ``Graph`` orders them as
``ggml_build_forward_expand`` does. :mod:`tui_llm.fit.ggml_alloc` then places them in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tui_llm.catalog.ggml_types import GGML_TYPES

# ggml type name -> (block size, bytes per block)
# (elements per block, bytes per block) by lower-case ggml type name, from the one type table.
TYPE_SIZES: dict[str, tuple[int, int]] = {
    name.lower(): (block, size) for name, block, size in GGML_TYPES.values()
}
TYPE_SIZES["weight"] = (1, 1)  # a model weight of any type: its size is given, not computed

# ops the scheduler treats as views (ggml_is_view_op)
VIEW_OPS = frozenset({"view", "reshape", "permute", "transpose"})


def row_bytes(type_name: str, n: int) -> int:
    """Bytes of ``n`` consecutive elements of a type (ggml_row_size)."""
    block, size = TYPE_SIZES[type_name]
    return n // block * size


def pad(value: int, alignment: int) -> int:
    """Round up to a multiple of ``alignment``."""
    return -(-value // alignment) * alignment


@dataclass(eq=False)
class Buffer:
    """Where a pre-allocated tensor lives: ``backend`` indexes the scheduler's backends."""

    backend: int
    weights: bool


@dataclass(eq=False)
class Tensor:
    """A ggml tensor's shape and provenance, with no data."""

    name: str
    op: str
    type: str
    ne: tuple[int, int, int, int]
    nb: tuple[int, int, int, int]
    src: list[Tensor | None] = field(default_factory=list)
    view_src: Tensor | None = None
    buffer: Buffer | None = None
    is_input: bool = False
    is_output: bool = False
    backend: int = -1
    fixed_size: int | None = None

    @property
    def is_view(self) -> bool:
        return self.view_src is not None

    def nbytes(self) -> int:
        if self.fixed_size is not None:
            return self.fixed_size
        block = TYPE_SIZES[self.type][0]
        total = self.ne[0] * self.nb[0] // block
        for dim in range(1, 4):
            total += (self.ne[dim] - 1) * self.nb[dim]
        return total

    def nrows(self) -> int:
        return self.ne[1] * self.ne[2] * self.ne[3]


def contiguous_nb(type_name: str, ne: Sequence[int]) -> tuple[int, int, int, int]:
    _, size = TYPE_SIZES[type_name]
    nb0 = size
    nb1 = row_bytes(type_name, ne[0])
    nb2 = nb1 * ne[1]
    return (nb0, nb1, nb2, nb2 * ne[2])


def _ne4(ne: Sequence[int]) -> tuple[int, int, int, int]:
    dims = [*ne, 1, 1, 1, 1][:4]
    return (dims[0], dims[1], dims[2], dims[3])


class Ops:
    """The ggml operations the llama graphs use, each making a Tensor as ggml would."""

    def __init__(self) -> None:
        self._count = 0

    def _name(self, name: str | None) -> str:
        self._count += 1
        return name or f"node_{self._count}"

    def new(self, type_name: str, ne: Sequence[int], name: str, *, op: str = "none") -> Tensor:
        shape = _ne4(ne)
        return Tensor(name, op, type_name, shape, contiguous_nb(type_name, shape))

    def weight(
        self, name: str, ne: Sequence[int], backend: int, nbytes: int | None = None
    ) -> Tensor:
        """A model weight already placed on ``backend`` (f32 unless its byte size is given)."""
        shape = _ne4(ne)
        tensor = Tensor(name, "none", "f32", shape, contiguous_nb("f32", shape))
        if nbytes is not None:
            tensor.type = "weight"
            tensor.fixed_size = nbytes
        tensor.buffer = Buffer(backend, weights=True)
        return tensor

    def input(self, type_name: str, ne: Sequence[int], name: str) -> Tensor:
        tensor = self.new(type_name, ne, name)
        tensor.is_input = True
        return tensor

    def _result(
        self, op: str, type_name: str, ne: Sequence[int], src: list[Tensor | None], name: str | None
    ) -> Tensor:
        tensor = self.new(type_name, ne, self._name(name), op=op)
        tensor.src = src
        return tensor

    def _view(
        self,
        op: str,
        a: Tensor,
        ne: Sequence[int],
        nb: tuple[int, int, int, int],
        name: str | None = None,
    ) -> Tensor:
        root = a.view_src if a.view_src is not None else a
        return Tensor(self._name(name), op, a.type, _ne4(ne), nb, [a], root)

    # ---- views ---------------------------------------------------------------------------

    def reshape(self, a: Tensor, ne: Sequence[int]) -> Tensor:
        return self._view("reshape", a, ne, contiguous_nb(a.type, _ne4(ne)))

    def view(self, a: Tensor, ne: Sequence[int], nb: Sequence[int]) -> Tensor:
        return self._view("view", a, ne, (a.nb[0], *nb, 0, 0, 0)[:4])  # type: ignore[arg-type]

    def permute(self, a: Tensor, axes: tuple[int, int, int, int]) -> Tensor:
        ne = [0, 0, 0, 0]
        nb = [0, 0, 0, 0]
        for source, target in enumerate(axes):
            ne[target] = a.ne[source]
            nb[target] = a.nb[source]
        return self._view("permute", a, ne, (nb[0], nb[1], nb[2], nb[3]))

    def transpose(self, a: Tensor) -> Tensor:
        return self.permute(a, (1, 0, 2, 3))

    def set_rows(self, dst: Tensor, rows: Tensor, idx: Tensor) -> Tensor:
        root = dst.view_src if dst.view_src is not None else dst
        src: list[Tensor | None] = [rows, idx, dst]
        return Tensor(self._name(None), "set_rows", dst.type, dst.ne, dst.nb, src, root)

    # ---- computations ----------------------------------------------------------------------

    def get_rows(self, a: Tensor, idx: Tensor, name: str | None = None) -> Tensor:
        out_type = "i32" if a.type == "i32" else "f32"
        ne = (a.ne[0], idx.ne[0], idx.ne[1], idx.ne[2])
        return self._result("get_rows", out_type, ne, [a, idx], name)

    def mul_mat(self, a: Tensor, b: Tensor, name: str | None = None) -> Tensor:
        ne = (a.ne[1], b.ne[1], b.ne[2], b.ne[3])
        return self._result("mul_mat", "f32", ne, [a, b], name)

    def mul_mat_id(self, experts: Tensor, b: Tensor, ids: Tensor) -> Tensor:
        """ggml_mul_mat_id: [rows, n_expert_used, n_tokens] from the chosen experts' matrices."""
        ne = (experts.ne[1], ids.ne[0], b.ne[2], 1)
        return self._result("mul_mat_id", "f32", ne, [experts, b, ids], None)

    def argsort(self, a: Tensor) -> Tensor:
        return self._result("argsort", "i32", a.ne, [a], None)

    def sum_rows(self, a: Tensor) -> Tensor:
        return self._result("sum_rows", a.type, (1, a.ne[1], a.ne[2], a.ne[3]), [a], None)

    def unary_like(
        self, op: str, a: Tensor, *more: Tensor | None, name: str | None = None
    ) -> Tensor:
        return self._result(op, a.type, a.ne, [a, *more], name)

    def cont(self, a: Tensor, ne: Sequence[int] | None = None) -> Tensor:
        return self._result("cont", a.type, ne if ne is not None else a.ne, [a], None)

    def glu(self, a: Tensor, b: Tensor) -> Tensor:
        return self._result("glu", a.type, a.ne, [a, b], None)

    def flash_attn(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        ne = (v.ne[0], q.ne[2], q.ne[1], q.ne[3])
        return self._result("flash_attn_ext", "f32", ne, [q, k, v, mask], None)


class Graph:
    """Nodes and leafs in ggml's order: depth-first from each expanded tensor, sources first."""

    def __init__(self) -> None:
        self.nodes: list[Tensor] = []
        self.leafs: list[Tensor] = []
        self._seen: set[int] = set()

    def expand(self, tensor: Tensor) -> None:
        stack: list[tuple[Tensor, int]] = [(tensor, 0)]
        while stack:
            current, next_src = stack.pop()
            if next_src == 0:
                if id(current) in self._seen:
                    continue
                self._seen.add(id(current))
            if next_src < len(current.src):
                stack.append((current, next_src + 1))
                src = current.src[next_src]
                if src is not None and id(src) not in self._seen:
                    stack.append((src, 0))
                continue
            if current.op == "none":
                self.leafs.append(current)
            else:
                self.nodes.append(current)
