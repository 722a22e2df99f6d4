"""Layer names as evidence: which torch layer is which Flax layer, by what they are called.

A torch layer's dotted name and a Flax layer's '/' path are cut into tokens: lower-case words,
and each word with the indices that follow it, so `encoder.layer.0.attention.self.query` and
`encoder/layer_0/attention/query` share `encoder`, `layer`, `layer#0`, `attention` and `query`.
Flax's automatic names (`Dense_0`: a class and a call count) say nothing and are left out.
Within a group of layers, a token that every layer of both sides has distinguishes nothing
and weighs nothing; rarer tokens weigh more. Two layers are partners by name when each is the
other's single best match: ties, or names with nothing in common, pair nothing.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_WORDS = re.compile(r"[a-z]+|\d+")
_AUTOMATIC = re.compile(r"[A-Z][A-Za-z0-9]*_\d+")  # Flax's name for an unnamed submodule
_TIE = 1e-9


def name_tokens(name: str) -> frozenset[str]:
    """The words of a layer's name (lower case) and each word with its indices ('layer#0')."""
    tokens: set[str] = set()
    word = ""
    for component in re.split(r"[./]", name):
        if _AUTOMATIC.fullmatch(component):
            word = ""
            continue
        for part in _WORDS.findall(component.lower()):
            if part.isdigit():
                if word:
                    word = f"{word}#{int(part)}"
                    tokens.add(word)
            else:
                word = part
                tokens.add(word)
    return frozenset(tokens)


class NameMatch:
    """How well the names of a group's torch layers match those of its Flax layers."""

    def __init__(self, torch_names: Sequence[str], flax_names: Sequence[str]) -> None:
        self.torch = [name_tokens(name) for name in torch_names]
        self.flax = [name_tokens(name) for name in flax_names]
        counts = Counter(token for tokens in self.torch + self.flax for token in tokens)
        total = len(self.torch) + len(self.flax)
        self.weight = {token: math.log(total / count) for token, count in counts.items()}
        self.scores = [[self._score(t, f) for f in self.flax] for t in self.torch]

    def _score(self, torch_tokens: frozenset[str], flax_tokens: frozenset[str]) -> float:
        """The weighted share of the two names' tokens that both have (0 to 1)."""
        union = sum(self.weight[token] for token in torch_tokens | flax_tokens)
        shared = sum(self.weight[token] for token in torch_tokens & flax_tokens)
        return shared / union if union > 0 else 0.0

    def partners(self) -> dict[int, int]:
        """Torch index -> Flax index, for the layers that are each other's single best match."""
        torch_best = [_single_best(row) for row in self.scores]
        flax_best = [_single_best([row[f] for row in self.scores]) for f in range(len(self.flax))]
        return {t: f for t, f in enumerate(torch_best)
                if f is not None and flax_best[f] == t and self.scores[t][f] > 0}

    def tells_apart(self, t: int, f: int, *, other_flax: int, other_torch: int) -> bool:
        """Whether torch layer `t` and Flax layer `f` share a distinguishing token that Flax
        layer `other_flax` lacks, and one that torch layer `other_torch` lacks: the names say
        which is which, not merely how long they are."""
        shared = {token for token in self.torch[t] & self.flax[f] if self.weight[token] > 0}
        return bool(shared - self.flax[other_flax]) and bool(shared - self.torch[other_torch])


def _single_best(scores: Sequence[float]) -> int | None:
    """The index of the highest score, None when it is shared (a tie decides nothing)."""
    if not scores:
        return None
    best = max(range(len(scores)), key=scores.__getitem__)
    if any(index != best and scores[index] > scores[best] - _TIE
           for index in range(len(scores))):
        return None
    return best


def distinct_part(name: str, others: Sequence[str]) -> str:
    """The first part of a layer's name ('.' or '/' separated) that no other name holds: what
    `hints`, `torch_only` or `flax_only` can pick it by. The whole name when no part will do."""
    return next((part for part in re.split(r"[./]", name)
                 if part and not any(part in other for other in others)), name)
