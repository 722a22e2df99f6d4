"""Automatic weight mapping for a torch module and its Flax port, without a table.

Both models are listed as layers of known kinds in the order they call them
(pytest_parity.mapping.layers: torch's traced by running it once, pytest_parity.mapping.
torch_calls; Flax's while `jax.eval_shape` traces a Linen module's `init`, or an NNX module's
call, so nothing is initialised). A wrapper holding a Linen module and its params
(transformers' Flax models) is traced through its module. An NNX side is seen through
pytest_parity.nnx_bridge: its Param and BatchStat variables at `params/<path>` and
`batch_stats/<path>`, so a Linen and an NNX port of one tree get the same mapping.
Layers pair up kind by kind, in order, and each pair's rules come from
pytest_parity.mapping.layer_rules, so an automatic mapping is the same `Mapping` a table would be.
Every pair's shapes are checked under its layout transform, and the layers' names check the
order (pytest_parity.mapping.pairing). A mismatch, or a kind whose counts differ, fails with
the unpaired layers of both sides and a hint to resolve it: `hints=[("downsample",
"shortcut")]` pairs torch layers whose name has `downsample` only with Flax layers whose path
has `shortcut`; `torch_only=("pooler",)` leaves torch's pooler out of the pairing (its tensors
are kept as torch-only rules), `flax_only` the same on the Flax side. `extra_rules` replace
the automatic rules of the keys they name (a layer they cover whole leaves the pairing). A
rule or hint that names nothing is an error (a typo).

Registered torch buffers in no layer are torch-only rules. A tied weight (one torch tensor
under two keys: GPT-2's `lm_head.weight` is `wte.weight`) is mapped once, at the key called
first; its other key is a torch-only rule with layout `tied:<that key>`, so a canonical
checkpoint restores both keys and Flax (which uses the one variable twice, e.g. by
`Embed.attend`) sees it once. Other tensors of no known kind (a model's own RMSNorm, a class
token) are paired by name, shape and call order where that is unambiguous, as rules marked
`inferred` (pytest_parity.mapping.inferred); the rest are named with the rules that would fit.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from typing import Any

from pytest_parity.errors import PREFIX
from pytest_parity.mapping.inferred import infer_rules, suggested_rules
from pytest_parity.mapping.layers import (
    FLAX_KINDS,
    TORCH_KINDS,
    flax_layers,
    flax_layers_and_shapes,
    flax_side_of,
    tied_keys,
    torch_layers,
)
from pytest_parity.mapping.pairing import RULES_OF_KIND, Layer, Pairing, pair_group
from pytest_parity.mapping.rule import MappingError, ParityMappingWarning, Rule
from pytest_parity.mapping.rules import Mapping
from pytest_parity.mapping.torch_calls import call_order, torch_call_inputs
from pytest_parity.nnx_bridge import NNXPort

__all__ = ["FLAX_KINDS", "RULES_OF_KIND", "TORCH_KINDS", "Layer", "automatic_mapping",
           "flax_layers", "flax_side_of", "torch_layers"]


def _grouped(layers: list[Layer], hints: Sequence[tuple[str, str]], side: int
             ) -> list[list[Layer]]:
    """The layers of each hint (their name holds the hint's part for this side), then the
    rest."""
    groups: list[list[Layer]] = [[] for _ in range(len(hints) + 1)]
    for layer in layers:
        index = next((i for i, hint in enumerate(hints) if hint[side] in layer.name),
                     len(hints))
        groups[index].append(layer)
    return groups


def _named_in(name: str, parts: Sequence[str]) -> bool:
    return any(part in name for part in parts)


def _torch_only(torch_model: Any, layers: list[Layer], rest: list[str], parts: Sequence[str],
                extra: Mapping) -> tuple[list[Layer], list[str], list[Rule]]:
    """Set aside what only torch keeps, as torch-only rules (the tensor as torch has it, at
    the key's path): the tensors of layers (or in no layer) whose names hold one of `parts`,
    and registered buffers in no layer. The layers and tensors left to pair, and the rules."""
    keys = [key for layer in layers if _named_in(layer.name, parts) for key in layer.shapes
            if extra.rule_for(key, "torch") is None]
    keys += [key for key in rest if _named_in(key, parts)]
    buffers = {name for name, _ in torch_model.named_buffers()}
    rules = [Rule(key.replace(".", "/"), key, "torch", collection=None) for key in keys]
    rules += [Rule(key.replace(".", "/"), key, "buffer", collection=None)
              for key in rest if key in buffers and key not in keys]
    taken = {rule.torch for rule in rules}
    return ([layer for layer in layers if not _named_in(layer.name, parts)],
            [key for key in rest if key not in taken], rules)


def _flax_only(layers: list[Layer], rest: list[str], parts: Sequence[str], extra: Mapping
               ) -> tuple[list[Layer], list[str], list[str]]:
    """Set aside the Flax variables of layers (or in no layer) whose names hold one of `parts`:
    the layers and variables left to pair, and the Flax-only variables."""
    paths = [path for layer in layers if _named_in(layer.name, parts) for path in layer.shapes
             if extra.rule_for(path.partition("/")[2]) is None]
    paths += [path for path in rest if _named_in(path, parts)]
    return ([layer for layer in layers if not _named_in(layer.name, parts)],
            [path for path in rest if path not in paths], paths)


def _close(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _naming_nothing(extra_rules: Sequence[Rule], hints: Sequence[tuple[str, str]],
                    torch_keys: Sequence[str], flax_paths: Sequence[str],
                    layer_names: tuple[list[str], list[str]]) -> list[str]:
    """A line for each extra rule whose torch key (or canonical path) matches no torch key
    (no Flax variable), and each hint part in no layer's name: typos, else silently unused."""
    problems = []
    for rule in extra_rules:
        if not any(rule.torch_pattern.match(key) for key in torch_keys):
            problems.append(f"  extra rule {rule.torch!r} -> {rule.canonical!r}: no torch key "
                            f"matches {rule.torch!r}{_close(rule.torch, torch_keys)}")
        if rule.collection is None:
            continue
        paths = [path.partition("/")[2] for path in flax_paths
                 if path.partition("/")[0] == rule.collection]
        for path, pattern in zip(rule.canonical_paths, rule.canonical_patterns, strict=True):
            if not any(pattern.match(flax_path) for flax_path in paths):
                problems.append(f"  extra rule {rule.torch!r} -> {path!r}: no Flax variable "
                                f"matches {rule.collection}/{path}{_close(path, paths)}")
    for torch_part, flax_part in hints:
        for side, part, names in (("torch", torch_part, layer_names[0]),
                                  ("Flax", flax_part, layer_names[1])):
            if not any(part in name for name in names):
                problems.append(f"  hint {(torch_part, flax_part)!r}: no {side} layer's name "
                                f"holds {part!r}{_close(part, names)}")
    return problems


def _torch_order(torch_model: Any, architecture: str, flax_inputs: tuple[Any, ...],
                 flax_kwargs: dict[str, Any], torch_inputs: Any,
                 torch_kwargs: dict[str, Any] | None) -> list[str] | None:
    """torch's module call order; None (registration order) where it cannot run (no inputs,
    no forward of its own), said in a warning when its forward fails."""
    inputs = torch_call_inputs(flax_inputs, flax_kwargs, torch_inputs, torch_kwargs)
    if inputs is None:
        return None
    order, failure = call_order(torch_model, *inputs)
    if order is None and failure:
        warnings.warn(f"{PREFIX} automatic mapping {architecture}: the torch model's forward "
                      f"failed on the inputs ({failure}), so its layers are taken in "
                      "registration order, not call order; pass torch_inputs= (and "
                      "torch_kwargs=) that its forward takes", ParityMappingWarning, stacklevel=3)
    return order


def _pair(torch_side: list[Layer], flax_side: list[Layer], hints: Sequence[tuple[str, str]],
          keep: Any) -> Pairing:
    result = Pairing()
    all_names = ([layer.name for layer in torch_side], [layer.name for layer in flax_side])
    for torch_group, flax_group in zip(_grouped(torch_side, hints, 0),
                                       _grouped(flax_side, hints, 1), strict=True):
        pairing = pair_group(torch_group, flax_group, all_names, keep)
        result.rules += pairing.rules
        result.problems += pairing.problems
        result.swaps += pairing.swaps
    return result


def _tie_rules(keys: Sequence[str], ties: dict[str, str]) -> list[Rule]:
    return [Rule(key.replace(".", "/"), key, f"tied:{ties[key]}", collection=None)
            for key in keys]


def automatic_mapping(torch_model: Any, flax_module: Any, *flax_inputs: Any,
                      torch_inputs: Any = None, torch_kwargs: dict[str, Any] | None = None,
                      hints: Sequence[tuple[str, str]] = (),
                      extra_rules: Sequence[Rule] = (), torch_only: Sequence[str] = (),
                      flax_only: Sequence[str] = (), name: str | None = None,
                      **flax_kwargs: Any) -> Mapping:
    """The mapping between a torch model (its meta-device build is enough) and a Flax module
    traced on `flax_inputs` (shapes suffice: jax.ShapeDtypeStruct). The Flax module: Linen,
    a wrapper holding one and its params (transformers' Flax models), or NNX (a module,
    concrete or abstract, an NNXPort, or a factory building one).

    Args:
        torch_inputs: what torch's forward takes (a tensor or array, a tuple of them, or a dict
            of named ones), run once to record the order it calls its layers in; by default
            made from the Flax inputs (pytest_parity.mapping.torch_calls).
        torch_kwargs: other arguments of torch's forward (use_cache=False).
        hints: (torch name part, Flax name part): layers whose names hold them pair only
            with each other.
        extra_rules: rules for tensors the automatic pairing misses or gets wrong; they replace
            the automatic rules of the keys they name.
        torch_only: name parts of torch layers (or tensors) the Flax model lacks: their
            tensors become torch-only rules (kept in canonical checkpoints, never in Flax).
        flax_only: name parts of Flax layers (or variables) torch lacks: listed as the
            mapping's `flax_only` variables.
        flax_kwargs: the Flax call's keyword inputs; those that are not arrays
            (deterministic=True) are passed as they are.

    Raises:
        MappingError: layers that cannot be paired (listing both sides and a hint), tensors
            that no layer of a known kind holds and nothing else pairs, or an extra rule or
            hint that names nothing.

    Warns:
        ParityMappingWarning: layers paired by name where the call order would pair them
            otherwise; a torch forward that failed (registration order used instead).
    """
    flax_module = flax_side_of(flax_module)
    flax_name = flax_module.name if isinstance(flax_module, NNXPort) else \
        type(flax_module).__name__
    architecture = name or f"auto:{type(torch_model).__name__}->{flax_name}"
    flax_side, flax_rest, flax_shapes = flax_layers_and_shapes(flax_module, *flax_inputs,
                                                               **flax_kwargs)
    order = _torch_order(torch_model, architecture, flax_inputs, flax_kwargs, torch_inputs,
                         torch_kwargs)
    torch_shapes = {key: tuple(value.shape) for key, value in torch_model.state_dict().items()}
    torch_side, torch_rest = torch_layers(torch_model, order)
    problems = _naming_nothing(extra_rules, hints, list(torch_shapes), list(flax_shapes),
                               ([layer.name for layer in torch_side],
                                [layer.name for layer in flax_side]))
    if problems:
        raise MappingError(f"automatic mapping {architecture}: extra rules or hints "
                           "that name nothing\n" + "\n".join(problems))
    extra = Mapping(architecture, tuple(extra_rules))

    def given(key: str, side: str = "canonical") -> bool:
        return extra.rule_for(key if side == "torch" else key.partition("/")[2], side) \
            is not None

    def keep(rule: Rule) -> bool:
        return extra.rule_for(rule.torch, "torch") is None and not any(
            extra.rule_for(path) for path in rule.canonical_paths)

    torch_side = [layer for layer in torch_side
                  if not all(given(key, "torch") for key in layer.shapes)]
    flax_side = [layer for layer in flax_side if not all(given(path) for path in layer.shapes)]
    torch_rest = [key for key in torch_rest if not given(key, "torch")]
    flax_rest = [path for path in flax_rest if not given(path)]
    ties = tied_keys(torch_model, order)
    tie_rules = _tie_rules([key for key in torch_rest if key in ties], ties)
    torch_rest = [key for key in torch_rest if key not in ties]
    torch_side, torch_rest, one_sided = _torch_only(torch_model, torch_side, torch_rest,
                                                    torch_only, extra)
    flax_side, flax_rest, flax_paths = _flax_only(flax_side, flax_rest, flax_only, extra)
    tied = [layer for layer in torch_side if all(key in ties for key in layer.shapes)]
    pairing = _pair([layer for layer in torch_side if layer not in tied], flax_side, hints, keep)
    if pairing.problems and tied and not (untied := _pair(torch_side, flax_side, hints,
                                                          keep)).problems:
        pairing = untied  # the Flax port keeps the tied layers' own variables
    else:
        tie_rules += _tie_rules([key for layer in tied for key in layer.shapes], ties)
    inferred = infer_rules({key: torch_shapes[key] for key in torch_rest},
                           {path: flax_shapes[path] for path in flax_rest})
    torch_rest = [key for key in torch_rest if key not in {rule.torch for rule in inferred}]
    flax_rest = [path for path in flax_rest
                 if path not in {f"{rule.collection}/{rule.canonical}" for rule in inferred}]
    problems = pairing.problems + _unpaired(torch_rest, flax_rest, torch_shapes, flax_shapes)
    if problems:
        raise MappingError(f"automatic mapping {architecture}: cannot pair the two "
                           "models unambiguously\n" + "\n".join(problems))
    if pairing.swaps:
        warnings.warn(f"{PREFIX} automatic mapping {architecture}: paired by name where the "
                      "call order says otherwise:\n  " + "\n  ".join(pairing.swaps),
                      ParityMappingWarning, stacklevel=2)
    return Mapping(architecture, (*extra_rules, *pairing.rules, *inferred, *tie_rules,
                                  *one_sided), flax_only=tuple(flax_paths))


def _unpaired(torch_rest: list[str], flax_rest: list[str],
              torch_shapes: dict[str, tuple[int, ...]],
              flax_shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The problem lines of the tensors nothing pairs: names, shapes, and fitting rules."""
    problems = []
    if torch_rest:
        problems.append(f"  torch tensors in no layer of a known kind: {', '.join(torch_rest)}")
    if flax_rest:
        problems.append(f"  Flax variables in no layer of a known kind: {', '.join(flax_rest)}")
    if not (torch_rest or flax_rest):
        return problems
    shapes = [f"{key} {torch_shapes[key]}" for key in torch_rest] + \
        [f"{path} {flax_shapes[path]}" for path in flax_rest]
    problems.append(f"    shapes: {', '.join(shapes)}")
    problems.append("    give their rules as extra_rules=[Rule(canonical path, torch key, "
                    "layout)]")
    suggested = suggested_rules({key: torch_shapes[key] for key in torch_rest},
                                {path: flax_shapes[path] for path in flax_rest})
    if suggested:
        problems.append(f"    shapes fit e.g.: extra_rules=[{', '.join(suggested)}]")
    return problems
