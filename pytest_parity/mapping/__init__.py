"""Mappings: which torch tensor is which Flax variable, as data, with invertible transforms.

    rule.py         Rule (torch key <-> canonical paths, with patterns), MappingError,
                    ParityMappingWarning
    rules.py        Mapping: rules, ignored torch keys, Flax-only variables; flatten
    transforms.py   Transpose, Reshape, Flip, Chain, Split: each with its exact inverse
    layer_rules.py  the rules of one layer of each kind (conv, linear, norms, attention...)
    names.py        layer names as evidence: which torch layer is which Flax layer by name
    pairing.py      pairing a group's layers: by order and shape, checked by name; hints
    automatic.py    automatic_mapping: the same Mapping for a pair without a table
    layers.py       both models as layers of known kinds in call order (wrappers, Conv1D, ties)
    torch_calls.py  a torch model's module call order, from forward pre-hooks
    inferred.py     tensors of no known kind paired by name, shape and order (inferred rules)
    nnx_calls.py    an NNX module's submodule calls intercepted in order (matcher, trace)
    files.py        a Mapping as a JSON file (save_mapping, load_mapping)
    lazy.py         LazyMapping: a pair's mapping built when the pair first uses it
"""

from pytest_parity.mapping.automatic import automatic_mapping
from pytest_parity.mapping.files import load_mapping, save_mapping
from pytest_parity.mapping.lazy import LazyMapping
from pytest_parity.mapping.nnx_calls import intercepted_calls, submodules
from pytest_parity.mapping.rule import MappingError, ParityMappingWarning, Rule
from pytest_parity.mapping.rules import Mapping, flatten, unflatten
from pytest_parity.mapping.transforms import Chain, Flip, Identity, Reshape, Split, Transpose

__all__ = [
    "Chain",
    "Flip",
    "Identity",
    "LazyMapping",
    "Mapping",
    "MappingError",
    "ParityMappingWarning",
    "Reshape",
    "Rule",
    "Split",
    "Transpose",
    "automatic_mapping",
    "flatten",
    "intercepted_calls",
    "load_mapping",
    "save_mapping",
    "submodules",
    "unflatten",
]
