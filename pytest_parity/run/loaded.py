"""A registered pair loaded from its canonical checkpoint onto one device, in one dtype.

What `parity_pair("resnet50")` returns: the torch model (eval mode) and the Flax module, its
variables and its jitted apply, both on the case's device and in the case's dtype.
"""

from __future__ import annotations

import copy
import functools
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_parity import threads
from pytest_parity.checkpoint.convert import (
    checkpoint_from_torch,
    checkpoint_to_flax,
    checkpoint_to_torch,
)
from pytest_parity.checkpoint.format import Checkpoint
from pytest_parity.compare import Comparison, compare, compared
from pytest_parity.diagnose import Diagnosis
from pytest_parity.errors import PREFIX
from pytest_parity.inputs import InputError
from pytest_parity.layouts import Layout
from pytest_parity.registry import Pair, flax_module_of
from pytest_parity.run.diagnosed import concluded, diagnosis_of
from pytest_parity.run.reference import (
    ReferenceSides,
    reference_sides,
    trace_tolerance,
    wanted,
)
from pytest_parity.run.sides import (
    flax_module_in,
    host_input,
    placed_variables,
    run_flax,
    run_torch,
    torch_model_on,
)


def checkpoint_for(pair: Pair, seed: int, cache_dir: Path) -> Checkpoint:
    """The pair's checkpoint for `seed`: its own source where it registers one (the zoo's
    seeded checkpoints), else the torch model's initialisation under torch.manual_seed(seed)."""
    if pair.checkpoint is not None:
        return pair.checkpoint(seed, cache_dir)
    import torch

    torch.manual_seed(seed)
    state = pair.torch_model().state_dict()
    return checkpoint_from_torch(state, pair, source=f"torch {torch.__version__} init, "
                                                     f"torch.manual_seed({seed})")


@dataclass(frozen=True)
class PairResult:
    """What `LoadedPair.assert_close` compared: the verdict, and both sides' outputs (numpy,
    torch's layout)."""

    comparison: Comparison
    torch: Any
    flax: Any


@dataclass
class LoadedPair:
    pair: Pair
    device: str
    dtype: str
    checkpoint: Checkpoint
    torch_model: Any
    flax_model: Any
    flax_variables: Any
    flax_apply: Callable[..., Any]  # jitted module.apply(variables, inputs)

    @property
    def name(self) -> str:
        return self.pair.name

    @property
    def layout(self) -> Layout:
        """How outputs come back to torch's layout: an image pair's feature maps move; named
        inputs keep every output as it is."""
        return Layout.SAME if self.pair.named_inputs else self.pair.input_layout

    def torch_forward(self, inputs: Any) -> Any:
        """The torch model's output on a torch-layout (e.g. NCHW) batch, or on named inputs
        (a dict of arrays), as numpy."""
        self.pair.check_inputs(inputs)
        try:
            return run_torch(self.torch_model, inputs, self.device, self.dtype)
        except InputError as error:
            raise InputError(f"{PREFIX} pair {self.name!r}, torch side: "
                             f"{str(error).removeprefix(PREFIX + ' ')}") from None

    def flax_forward(self, inputs: Any) -> Any:
        """The Flax model's output on the same torch-layout batch (given to Flax in its own
        layout, e.g. NHWC), as numpy in torch's layout."""
        self.pair.check_inputs(inputs)
        return run_flax(self.flax_apply, self.pair.to_flax(inputs), self.device,
                        self.dtype, variables=self.flax_variables, layout=self.layout)

    def tolerance(self, rtol: float | None = None, atol: float | None = None
                  ) -> dict[str, float]:
        """The pair's tolerance for this dtype, with rtol/atol where given."""
        given = {key: value for key, value in (("rtol", rtol), ("atol", atol))
                 if value is not None}
        return {**self.pair.tolerance(self.dtype), **given}

    def _flax_given(self, inputs: Any, flax_inputs: Any) -> Any:
        """What the Flax side is given: its own inputs, else `inputs` in its layout."""
        self.pair.check_inputs(inputs)
        if flax_inputs is None:
            return self.pair.to_flax(inputs)
        self.pair.check_inputs(flax_inputs)
        if isinstance(flax_inputs, dict):
            return {name: np.asarray(value) for name, value in flax_inputs.items()}
        return np.asarray(flax_inputs)

    def assert_close(self, inputs: Any, *, flax_inputs: Any = None, rtol: float | None = None,
                     atol: float | None = None, mask: Any = None,
                     name: str | None = None) -> PairResult:
        """Run both sides on `inputs` (torch's layout, or named inputs as a dict; Flax gets
        them in its own layout, or `flax_inputs` where its input pipeline is its own) and
        assert their outputs are close under the pair's tolerance, counting only the elements
        `mask` keeps (an array, a tree of masks matching the outputs, or a function of the
        leaf's path; see pytest_parity.compare). A bfloat16/float16 case is judged by its
        error budget: both sides run again in float32 on the same rounded weights and inputs
        (pytest_parity.compare.budget). Where the pair declares an attention mask,
        an unmasked failure whose worst element is padding says so. A failure is diagnosed
        (`--parity-trace`): the weight and settings audits, and the first divergent module.

        Raises:
            AssertionError: the failure report, then where it goes wrong.
            InputError: named inputs that do not fit what the pair declares.
        """
        __tracebackhide__ = True
        flax_given = self._flax_given(inputs, flax_inputs)
        flax_out = run_flax(self.flax_apply, flax_given, self.device, self.dtype,
                            variables=self.flax_variables, layout=self.layout)
        torch_out = self.torch_forward(inputs)
        reference = self.reference.outputs(inputs, flax_given, self.layout) \
            if wanted(self.dtype) else None
        comparison = compared(flax_out, torch_out, name=name or self.name, mask=mask,
                              padding=self.pair.padding(inputs), reference=reference,
                              **self.tolerance(rtol, atol))
        concluded(comparison, lambda: self.diagnose(inputs, flax_inputs=flax_inputs,
                                                    rtol=rtol, atol=atol),
                  record={**comparison.to_record(), "torch_only": self.torch_only})
        return PairResult(comparison, torch_out, flax_out)

    @functools.cached_property
    def reference(self) -> ReferenceSides:
        """Both sides in the reference precision (float32 for a bfloat16/float16 pair) on
        this pair's rounded weights, for its budget verdict; built on first use, kept."""
        return reference_sides(self.torch_model, self.flax_model, self.flax_variables,
                               self.device, self.dtype)

    @functools.cached_property
    def torch_only(self) -> list[str]:
        """The torch tensors no Flax variable holds (rules without a Flax collection: buffers
        such as BatchNorm's `num_batches_tracked`, layers a mapping declares torch-only), as
        sorted patterns with each index as '*' ('layer1.*.bn1.num_batches_tracked'): listed
        in each comparison's record, since the comparison cannot cover them."""
        mapping = self.pair.mapping
        return sorted({_INDEX.sub("*", key) for key in self.torch_model.state_dict()
                       if (rule := mapping.rule_for(key, "torch")) is not None
                       and rule.collection is None})

    def diagnose(self, inputs: Any, *, flax_inputs: Any = None, rtol: float | None = None,
                 atol: float | None = None, descend: bool | None = None,
                 every_module_alone: bool = False) -> Diagnosis:
        """The weight and settings audits and the activation trace of one input (as
        `assert_close` takes it; in a case judged by its budget, each module is held to the
        budget's element bound on this input); `descend=True` searches for a culprit even
        where the outputs agree; `every_module_alone` runs each module on torch's inputs (to
        measure noise)."""
        layout, tolerance = self.layout, self.tolerance(rtol, atol)
        flax_given = self._flax_given(inputs, flax_inputs)
        if wanted(self.dtype) and not tolerance:  # judged by its budget: so are its modules
            tolerance = trace_tolerance(self.reference, self.torch_forward(inputs), inputs)
        inputs_differ = flax_inputs is not None and not _agree(
            _host(flax_given, self.dtype, layout, inputs), _host(inputs, self.dtype), tolerance)
        return diagnosis_of(
            mapping=self.pair.mapping, torch_model=self.torch_model, flax_module=self.flax_model,
            flax_variables=self.flax_variables, inputs=inputs, flax_inputs=flax_given,
            layout=layout, device=self.device, dtype=self.dtype, tolerance=tolerance,
            inputs_differ=inputs_differ, descend=descend,
            every_module_alone=every_module_alone)


# An index part of a torch key ('layer1.0.bn1' -> 'layer1.*.bn1'); digits in a name stay.
_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)")


def _host(given: Any, dtype: str, layout: Layout = Layout.SAME, torch_given: Any = None
          ) -> Any:
    """Inputs as both sides get them on the host, in torch's layout."""
    if isinstance(given, dict):
        return {name: host_input(value, dtype) for name, value in given.items()}
    return layout.output_to_torch(host_input(given, dtype), np.ndim(torch_given)
                                  if torch_given is not None else np.ndim(given))


def _agree(flax_inputs: Any, torch_inputs: Any, tolerance: dict[str, float]) -> bool:
    """Whether the two sides' own inputs agree (inputs of other shapes do not)."""
    try:
        return compare(flax_inputs, torch_inputs, name="inputs", rtol=tolerance.get("rtol"),
                       atol=tolerance.get("atol")).passed
    except AssertionError:
        return False


@functools.cache
def _meta_model(pair: Pair) -> Any:
    """The pair's torch model built once on the meta device: structure, no memory, no init."""
    import torch

    with torch.device("meta"):
        return pair.torch_model()


def _torch_model_with(pair: Pair, state: dict[str, Any]) -> Any:
    """The torch model holding `state`: a copy of the meta-device build, its tensors assigned
    from the state dict, so that the model's own random initialisation (~200 ms for ResNet-50)
    is skipped; built normally where the state dict does not cover every tensor
    (non-persistent buffers)."""
    model = copy.deepcopy(_meta_model(pair))
    model.load_state_dict(state, assign=True)
    if any(tensor.is_meta for tensor in (*model.parameters(), *model.buffers())):
        model = pair.torch_model()
        model.load_state_dict(state)
    return model


def _flax_variables(pair: Pair, checkpoint: Checkpoint, device: str, dtype: str) -> Any:
    """The checkpoint's Flax variables on the device, floating ones in `dtype`."""
    return placed_variables(checkpoint_to_flax(checkpoint, pair), device, dtype)


def load_pair(pair: Pair, checkpoint: Checkpoint, device: str, dtype: str) -> LoadedPair:
    """Both models of `pair` with the checkpoint's weights, on `device`, in `dtype`. The Flax
    side is converted and transferred in a worker thread while the torch side is built."""
    import jax
    import torch

    flax_side = threads.submit(_flax_variables, pair, checkpoint, device, dtype)
    state = {key: torch.from_numpy(value)
             for key, value in checkpoint_to_torch(checkpoint, pair).items()}
    model = torch_model_on(_torch_model_with(pair, state), device, dtype)
    flax_model = flax_module_in(flax_module_of(pair), dtype)
    return LoadedPair(pair, device, dtype, checkpoint, model, flax_model, flax_side.result(),
                      jax.jit(flax_model.apply))


class PairCache:
    """Loaded pairs by (name, device, dtype, seed), the most recent `keep` of them; one per
    session (and per xdist worker): ViT-L/16 alone holds ~2.5 GB in both frameworks."""

    def __init__(self, cache_dir: Path, keep: int = 3) -> None:
        self.cache_dir = cache_dir
        self.keep = keep
        self.loaded: OrderedDict[tuple[str, str, str, int], LoadedPair] = OrderedDict()

    def get(self, pair: Pair, device: str, dtype: str, seed: int) -> LoadedPair:
        key = (pair.name, device, dtype, seed)
        if key in self.loaded:
            self.loaded.move_to_end(key)
            return self.loaded[key]
        while len(self.loaded) >= self.keep:
            self.loaded.popitem(last=False)
        same_checkpoint = [p.checkpoint for (name, *_, s), p in self.loaded.items()
                           if (name, s) == (pair.name, seed)]
        checkpoint = (same_checkpoint[0] if same_checkpoint
                      else checkpoint_for(pair, seed, self.cache_dir))
        self.loaded[key] = load_pair(pair, checkpoint, device, dtype)
        return self.loaded[key]
