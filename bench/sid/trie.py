"""The prefix trie of valid SIDs as dense tensors, and the batched beam search constrained by it."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from bench.core.errors import ConfigError


class SIDTrie:
    """The prefix trie of the items' SIDs as one dense table per level, on ``device``.

    ``children[l]`` [n_nodes_l, codebook_sizes[l]]: the child node of node ``n``
    (a distinct prefix of length ``l``; level 0 has only the root, node 0)
    along code ``c``, or -1; at the last level the child is the item index.
    """

    def __init__(self, codes: np.ndarray | torch.Tensor, codebook_sizes: Sequence[int],
                 device: torch.device | str = "cpu"):
        codes = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes)
        sizes = [int(s) for s in codebook_sizes]
        if codes.ndim != 2 or codes.shape[1] != len(sizes) or not np.issubdtype(codes.dtype, np.integer):
            raise ConfigError(f"SID codes must be integers [n_items, {len(sizes)}] (one column per codebook "
                              f"size {sizes}), found {codes.dtype} {codes.shape}")
        codes = codes.astype(np.int64)
        for level, size in enumerate(sizes):
            column = codes[:, level]
            if len(column) and (column.min() < 0 or column.max() >= size):
                raise ConfigError(f"SID codes of level {level} must lie in [0, {size}), "
                                  f"found [{column.min()}, {column.max()}]")
        n_items = len(codes)
        unique, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
        if len(unique) < n_items:
            inverse = inverse.reshape(-1)
            shared = int(np.argmax(counts))
            items = np.flatnonzero(inverse == shared)[:5].tolist()
            raise ConfigError(
                f"SID codes must be unique per item: {n_items - len(unique)} items repeat another item's code "
                f"tuple (e.g. items {items} all have {tuple(unique[shared].tolist())}); run the collision "
                "post-step on the tokenizer's codes first"
            )
        self.device = torch.device(device)
        self.codebook_sizes = sizes
        self.n_items = n_items
        self.children: list[torch.Tensor] = []
        parent, n_nodes = np.zeros(n_items, dtype=np.int64), 1  # every item starts at the root
        for level, size in enumerate(sizes):
            if level < len(sizes) - 1:  # child = the item's prefix of length level + 1
                prefixes, child = np.unique(codes[:, : level + 1], axis=0, return_inverse=True)
                child, n_children = child.reshape(-1), len(prefixes)
            else:  # the leaf is the item itself
                child, n_children = np.arange(n_items), n_items
            table = np.full((n_nodes, size), -1, dtype=np.int32)
            table[parent, codes[:, level]] = child
            self.children.append(torch.from_numpy(table).to(self.device))
            parent, n_nodes = child, n_children

    @property
    def n_nodes(self) -> list[int]:
        """Number of distinct prefixes of length 0 .. L-1."""
        return [len(t) for t in self.children]

    def valid(self, level: int, nodes: torch.Tensor) -> torch.Tensor:
        """Which codes of ``level`` continue each node ``nodes`` [...] -> bool [..., codebook_sizes[level]]."""
        return (self.children[level][nodes.clamp(min=0)] >= 0) & (nodes >= 0)[..., None]

    def step(self, level: int, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The child of each node along its code (-1 for no child, or from node -1); items at the last level."""
        child = self.children[level][nodes.clamp(min=0), codes].long()
        return child.masked_fill(nodes < 0, -1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """The item with each full code tuple ``codes`` [N, L], or -1 where the tuple is no item."""
        nodes = torch.zeros(len(codes), dtype=torch.long, device=self.device)
        for level in range(len(self.children)):
            nodes = self.step(level, nodes, codes[:, level].to(self.device))
        return nodes


def beam_search(step_logprobs: Callable[[torch.Tensor], torch.Tensor], trie: SIDTrie, batch: int, beam: int,
                n_levels: int, constrained: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched beam search over SIDs: (items [batch, beam], scores [batch, beam]), best first.

    ``step_logprobs(prefix_codes [batch*beam, l]) -> log-probs [batch*beam, codebook_sizes[l]]``
    scores level ``l`` given the level codes chosen so far (rows ``b*beam .. b*beam+beam-1``
    belong to user ``b``). Constrained, codes that leave the trie get -inf, so
    every returned item is real; unconstrained, a tuple that is no item comes
    back as -1. A slot stays empty (-1, score -inf) when fewer than ``beam``
    hypotheses exist. Everything is tensor ops on the trie's device.
    """
    device = trie.device
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # level 0 expands one beam, so no two beams are the same hypothesis
    nodes = torch.zeros((batch, beam), dtype=torch.long, device=device)  # all at the root
    prefix = torch.zeros((batch, beam, 0), dtype=torch.long, device=device)
    for level in range(n_levels):
        size = trie.codebook_sizes[level]
        logp = step_logprobs(prefix.reshape(batch * beam, level)).float().view(batch, beam, size)
        if constrained:
            logp = logp.masked_fill(~trie.valid(level, nodes), float("-inf"))
        scores, flat = (scores[..., None] + logp).view(batch, beam * size).topk(beam, dim=1)
        parent, code = flat // size, flat % size
        nodes = trie.step(level, nodes.gather(1, parent), code)
        prefix = torch.cat([prefix.gather(1, parent[..., None].expand(-1, -1, level)), code[..., None]], dim=2)
    items = nodes.masked_fill(scores == float("-inf"), -1)
    return items, scores
