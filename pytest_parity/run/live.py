"""A pair from live objects: a torch model and a Flax model a user already holds, checked
without registering anything.

    pair = pair_of(BertModel(config), FlaxBertModel(config), inputs=(...),
                   flax_call={"deterministic": True}, dtype=parity_dtype)
    pair.assert_close(pair.example_inputs())

The Flax side: a Linen module, an NNX module, or a library's model object holding a module and
its parameters (transformers' Flax models: their `.module`). Its variables: carried from the
torch model's weights through the mapping (automatic where none is given), or the user's own
(`variables=`, converted by their own code): then the weight audit of a failure compares them
with the mapping's conversion and says so where they differ, since a broken converter fails a
correct port. What comes back is what `parity_pair(name)` returns (LoadedPair).
"""

from __future__ import annotations

import copy
import dataclasses
import weakref
from collections.abc import Mapping as MappingType
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from pytest_parity.calls import wrapped_module
from pytest_parity.checkpoint import checkpoint_from_torch
from pytest_parity.decoders import Decoding
from pytest_parity.errors import ParityError
from pytest_parity.inputs import Input
from pytest_parity.layouts import Layout
from pytest_parity.mapping import Mapping, automatic_mapping, flatten
from pytest_parity.registry import Pair
from pytest_parity.run.loaded import LoadedPair
from pytest_parity.run.loading import load_pair
from pytest_parity.run.sides import placed_variables


class _Held:
    """A live model as a pair's factory, held weakly: the pair (a key of this process's
    caches of pair structures) must not keep the user's weights alive. A torch model asked for
    on the meta device (the pair's structure) comes as a copy without its data; elsewhere as
    a copy with its weights (non-persistent buffers included); a Flax module as it is."""

    def __init__(self, model: Any, copied: bool) -> None:
        self.__name__ = type(model).__name__
        self._model, self._copied = weakref.ref(model), copied

    def __call__(self) -> Any:
        model = self._model()
        if model is None:
            raise ParityError(f"the {self.__name__} given to pair_of is gone; build "
                              "the pair again from a model you still hold")
        if not self._copied:
            return model
        import torch

        if torch.get_default_device().type == "meta":
            return _structure_of(model)
        return copy.deepcopy(model)


def _structure_of(model: Any) -> Any:
    """A copy of a torch model whose tensors are on the meta device (shapes, no data): the
    model's own tensors are not copied."""
    import torch

    memo: dict[int, Any] = {}
    for parameter in model.parameters():
        memo[id(parameter)] = torch.nn.Parameter(torch.empty_like(parameter, device="meta"),
                                                 requires_grad=parameter.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return copy.deepcopy(model, memo)


def _name(torch_model: Any, flax_module: Any) -> str:
    return f"{type(torch_model).__name__}->{type(flax_module).__name__}"


def _torch_examples(pair: Pair) -> Any:
    """The torch side's example inputs as tensors (the automatic mapping traces its calls)."""
    import torch

    given = pair.example_inputs(0)
    if isinstance(given, dict):
        return {name: torch.from_numpy(np.asarray(value)) for name, value in given.items()}
    return (torch.from_numpy(given),)


def _mapping(pair: Pair, torch_model: Any, flax_module: Any,
             options: MappingType[str, Any]) -> Mapping:
    args, kwargs = pair.flax_examples()
    return automatic_mapping(torch_model, flax_module, *args, **kwargs, **pair.flax_call,
                             torch_inputs=_torch_examples(pair),
                             torch_kwargs=dict(pair.torch_call), name=pair.name,
                             **options)


def pair_of(torch_model: Any, flax_model: Any, variables: Any = None, *,
            inputs: Sequence[Input] = (), input_shape: tuple[int, ...] = (),
            input_layout: Layout = Layout.IMAGE, mapping: Mapping | None = None,
            torch_call: MappingType[str, Any] | None = None,
            flax_call: MappingType[str, Any] | None = None,
            output_layout: Layout | MappingType[str, Layout] | None = None,
            outputs: str = "all",
            tolerances: MappingType[str, MappingType[str, float]] | None = None,
            device: str = "cpu", dtype: str = "float32", name: str | None = None,
            mapping_options: MappingType[str, Any] | None = None,
            decoding: Decoding | None = None) -> LoadedPair:
    """Both models ready on `device` in `dtype`, as `parity_pair(name)` gives a registered
    pair: assert_close, diagnose, assert_grads_close, assert_steps_close.

    Args:
        torch_model: the torch model, with its weights (left as it is: a copy is checked).
        flax_model: a Linen or NNX module, or a library's model object holding one
            (`.module` and `.params`: its own parameters are not used unless given as
            `variables`).
        variables: the Flax side's variables where the user converted them ({"params":
            ...}); None: torch's weights carried through the mapping.
        inputs / input_shape / input_layout / torch_call / flax_call / output_layout /
            outputs / tolerances: as `Pair` takes them.
        mapping: the mapping between the two; None: `automatic_mapping` of the two models
            traced on the declared inputs, given `mapping_options` (hints, extra_rules,
            torch_only, flax_only).
        decoding: how each side decodes with its KV cache (pytest_parity.decoders), for
            `assert_decoding_close`; None: transformers' conventions where both sides are
            transformers' causal language models.

    Raises:
        MappingError: the automatic mapping cannot pair the two models (naming the layers).
        CheckpointError: the torch weights or the given variables do not fit the mapping.
    """
    flax_module = wrapped_module(flax_model)
    pair = Pair(name or _name(torch_model, flax_module), _Held(torch_model, copied=True),
                _Held(flax_module, copied=False), cast(Mapping, mapping),
                input_shape=tuple(input_shape),
                tolerances=dict(tolerances or {}), input_layout=input_layout,
                inputs=tuple(inputs), torch_call=dict(torch_call or {}),
                flax_call=dict(flax_call or {}), output_layout=output_layout, outputs=outputs,
                decoding=decoding)
    if mapping is None:
        pair = dataclasses.replace(pair, mapping=_mapping(pair, torch_model, flax_module,
                                                          mapping_options or {}))
    state = {key: value.detach().cpu().numpy() for key, value in torch_model.state_dict().items()}
    checkpoint = checkpoint_from_torch(state, pair, source=f"live {type(torch_model).__name__}")
    loaded = load_pair(pair, checkpoint, device, dtype)
    if variables is not None:
        loaded.flax_variables = placed_variables(
            _fitting(variables, loaded.flax_variables, pair.name), device, dtype)
        loaded.variables_given = True
    return loaded


def _fitting(variables: Any, expected: Any, owner: str) -> Any:
    """The user's variables (numpy), where they hold the variables the Flax module has, of the
    same shapes; bare parameters ({"embeddings": ...}) taken as the "params" collection.

    Raises:
        ParityError: naming the variables missing, unexpected or of another shape.
    """
    import jax

    given = jax.device_get(variables)
    if "params" not in given and "params" in expected:
        given = {**{key: value for key, value in expected.items() if key != "params"},
                 "params": given}
    given_flat, expected_flat = flatten(given), flatten(expected)
    problems = [f"{path}: missing (the module has {np.shape(value)})"
                for path, value in expected_flat.items() if path not in given_flat]
    problems += [f"{path}: not a variable of the module" for path in given_flat
                 if path not in expected_flat]
    problems += [f"{path}: shape {np.shape(value)}, the module has {np.shape(expected_flat[path])}"
                 for path, value in given_flat.items()
                 if path in expected_flat and np.shape(value) != np.shape(expected_flat[path])]
    if problems:
        shown = problems[:8] + ([f"... {len(problems) - 8} more"] if len(problems) > 8 else [])
        raise ParityError(f"pair {owner!r}: the given variables do not fit the Flax "
                          "module\n  " + "\n  ".join(shown))
    return given
