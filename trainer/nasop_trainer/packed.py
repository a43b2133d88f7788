"""M tutorial MLPs as one batched model: stacked, zero-padded weights and one Adam for all.

A small MLP cannot fill an accelerator: each step is a chain of tiny kernels. Stacking the
weights of M members (``bmm`` over the member axis) runs M models' steps in the launches of one.
Members may differ in hidden sizes: each is padded to the pack's widest ``h1``/``h2`` with zero
weights, and ``masks`` (1 on a member's own units, 0 on padding) zero the padding's gradients,
so padded units stay exactly zero and each member computes exactly its own unpadded network.

Layout (M members, D inputs, H1/H2 the widest hidden sizes, C classes): ``w1`` is (D, M, H1) so
that the first layer, whose input every member shares, is one plain matmul of the batch with a
(D, M*H1) view; ``w2`` (M, H1, H2) and ``w3`` (M, H2, C) are ``bmm`` operands; biases are
(M, 1, H). A member is moved in and out as the lone model's ``nn.Sequential``
(``network.build_network``), so its initial weights and its unpadded copy (for ``num_params`` and
``latency_ms``) are exactly the lone run's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasop_trainer import network

NAMES = ("w1", "b1", "w2", "b2", "w3", "b3")
_MEMBER_AXIS = {"w1": 1}  # every other tensor has the member axis first


@dataclasses.dataclass(frozen=True)
class Shape:
    """One member's architecture: what its lone ``nn.Sequential`` is built from."""

    hidden_size_1: int
    hidden_size_2: int
    dropout: float


class Stack:
    """The stacked weights (leaf tensors with gradients) and padding masks of M members.

    Args:
        networks: each member's lone network (``network.build_network``), already initialised.
        shapes: each member's hidden sizes and dropout, in the same order.
    """

    def __init__(self, networks: Sequence[nn.Sequential], shapes: Sequence[Shape]) -> None:
        first = networks[0][0].weight
        input_dim, classes = first.shape[1], networks[0][6].weight.shape[0]
        h1 = max(s.hidden_size_1 for s in shapes)
        h2 = max(s.hidden_size_2 for s in shapes)
        m, like = len(shapes), {"dtype": first.dtype, "device": first.device}
        self.params = {
            "w1": torch.zeros(input_dim, m, h1, **like),
            "b1": torch.zeros(m, 1, h1, **like),
            "w2": torch.zeros(m, h1, h2, **like),
            "b2": torch.zeros(m, 1, h2, **like),
            "w3": torch.zeros(m, h2, classes, **like),
            "b3": torch.zeros(m, 1, classes, **like),
        }
        self.shapes = list(shapes)
        with torch.no_grad():
            for slot, lone in enumerate(networks):
                for name, stacked in self._views(slot).items():
                    stacked.copy_(_lone_tensor(lone, name))
        self.masks = {name: torch.zeros_like(t) for name, t in self.params.items()}
        for slot in range(m):
            for view in self._views(slot, self.masks).values():
                view.fill_(1)
        for tensor in self.params.values():
            tensor.requires_grad_(True)
        self.dropout = torch.tensor([s.dropout for s in shapes], **like)
        self.any_dropout = any(s.dropout > 0 for s in shapes)  # a bool: no device sync per step

    def __len__(self) -> int:
        return len(self.shapes)

    def _views(
        self, slot: int, source: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """The unpadded region of member ``slot`` in each stacked tensor (lone layout)."""
        t = self.params if source is None else source
        a, b = self.shapes[slot].hidden_size_1, self.shapes[slot].hidden_size_2
        return {
            "w1": t["w1"][:, slot, :a],
            "b1": t["b1"][slot, 0, :a],
            "w2": t["w2"][slot, :a, :b],
            "b2": t["b2"][slot, 0, :b],
            "w3": t["w3"][slot, :b, :],
            "b3": t["b3"][slot, 0, :],
        }

    def padding(self) -> dict[str, torch.Tensor]:
        """Every stacked tensor's padded entries (for checks that they stay zero)."""
        return {n: t.detach()[self.masks[n] == 0] for n, t in self.params.items()}

    def network(self, slot: int) -> nn.Sequential:
        """Member ``slot`` as its own unpadded lone network (a copy, in eval-ready form)."""
        shape = self.shapes[slot]
        first = self.params["w1"]
        lone = network.build_network(
            first.shape[0],
            shape.hidden_size_1,
            shape.hidden_size_2,
            shape.dropout,
            self.params["w3"].shape[2],
        )
        lone.to(dtype=first.dtype, device=first.device)
        with torch.no_grad():
            for name, stacked in self._views(slot).items():
                _lone_tensor(lone, name).copy_(stacked)
        return lone

    def forward(
        self, x: torch.Tensor, *, train: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Log-probabilities (M, B, C) of every member for one shared batch ``x`` (B, D).

        ``train`` applies each member's dropout, drawn from ``generator``.
        """
        p = self.params
        d, m, h1 = p["w1"].shape
        hidden = (x @ p["w1"].reshape(d, m * h1)).view(-1, m, h1).transpose(0, 1) + p["b1"]
        hidden = self._dropout(F.relu(hidden), train, generator)
        hidden = self._dropout(F.relu(torch.baddbmm(p["b2"], hidden, p["w2"])), train, generator)
        return F.log_softmax(torch.baddbmm(p["b3"], hidden, p["w3"]), dim=-1)

    def _dropout(
        self, hidden: torch.Tensor, train: bool, generator: torch.Generator | None
    ) -> torch.Tensor:
        if not train or not self.any_dropout:
            return hidden
        rate = self.dropout.view(-1, 1, 1)
        draw = torch.rand(
            hidden.shape, generator=generator, dtype=hidden.dtype, device=hidden.device
        )
        return hidden * (draw >= rate) / (1 - rate)

    def mask_gradients(self) -> None:
        """Zeroes the padding's gradients, so Adam leaves padded weights exactly at zero."""
        with torch.no_grad():
            torch._foreach_mul_(
                [t.grad for t in self.params.values()], [self.masks[n] for n in self.params]
            )

    def keep(self, slots: Sequence[int]) -> None:
        """Drops every member not in ``slots`` (which keep their order)."""
        index = torch.tensor(list(slots), device=self.params["w1"].device)
        with torch.no_grad():
            for store in (self.params, self.masks):
                for name in NAMES:
                    store[name] = store[name].index_select(_MEMBER_AXIS.get(name, 0), index)
        for tensor in self.params.values():
            tensor.requires_grad_(True)
        self.shapes = [self.shapes[i] for i in slots]
        self.dropout = self.dropout.index_select(0, index)
        self.any_dropout = any(s.dropout > 0 for s in self.shapes)


def _lone_tensor(lone: nn.Sequential, name: str) -> torch.Tensor:
    """The lone network's tensor for a stacked name, in the stacked layout (weights transposed)."""
    layer = lone[{"1": 0, "2": 3, "3": 6}[name[1]]]
    return layer.weight.T if name[0] == "w" else layer.bias


def member_view(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """A per-member broadcastable view of a (M,) tensor for the stacked tensor ``name``."""
    shape = [1, 1, 1]
    shape[_MEMBER_AXIS.get(name, 0)] = -1
    return tensor.view(shape)


class Adam:
    """Adam over the stacked tensors, with one learning rate per member.

    The arithmetic is ``torch.optim.Adam``'s (default betas and eps, no weight decay). The
    members of a stack start together and step together (a member only ever leaves), so they
    share one step count and its bias corrections; the learning rates are held as tensors of
    each parameter's shape, so the update is same-shape ``_foreach`` arithmetic, which is fast
    on CPU and one multi-tensor kernel per operation on a GPU.

    Args:
        stack: the pack whose ``params`` it updates.
        learning_rates: one per member, in the stack's order.
    """

    def __init__(
        self,
        stack: Stack,
        learning_rates: Sequence[float],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        like = stack.params["w1"]
        self.stack = stack
        self.lr = torch.tensor(list(learning_rates), dtype=like.dtype, device=like.device)
        self.steps = 0
        self.betas, self.eps = betas, eps
        self.exp_avg = {n: torch.zeros_like(t) for n, t in stack.params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(t) for n, t in stack.params.items()}
        self._spread_rates()

    def _spread_rates(self) -> None:
        self.lr_like = {
            n: member_view(self.lr, n).expand_as(t).contiguous()
            for n, t in self.stack.params.items()
        }

    @torch.no_grad()
    def step(self) -> None:
        """One update of every member from the gradients in ``stack.params``."""
        beta1, beta2 = self.betas
        self.steps += 1
        correction1 = 1 - beta1**self.steps
        correction2_sqrt = (1 - beta2**self.steps) ** 0.5
        params = list(self.stack.params.values())
        grads = [p.grad for p in params]
        exp_avgs = [self.exp_avg[n] for n in self.stack.params]
        exp_avg_sqs = [self.exp_avg_sq[n] for n in self.stack.params]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denoms, correction2_sqrt)
        torch._foreach_add_(denoms, self.eps)
        steps = torch._foreach_mul(exp_avgs, [self.lr_like[n] for n in self.stack.params])
        torch._foreach_addcdiv_(params, steps, denoms, -1 / correction1)

    def zero_grad(self) -> None:
        for param in self.stack.params.values():
            param.grad = None

    def keep(self, slots: Sequence[int]) -> None:
        """Drops the state of every member not in ``slots`` (call with ``Stack.keep``)."""
        index = torch.tensor(list(slots), device=self.lr.device)
        self.lr = self.lr.index_select(0, index)
        for store in (self.exp_avg, self.exp_avg_sq):
            for name in NAMES:
                store[name] = store[name].index_select(_MEMBER_AXIS.get(name, 0), index)
        self._spread_rates()


__all__ = ["NAMES", "Adam", "Shape", "Stack", "member_view"]
