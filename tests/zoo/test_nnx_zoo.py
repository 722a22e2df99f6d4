"""The zoo's Flax NNX ports (models/*/nnx_model.py) beside their Linen twins: against
torchvision, against the golden logits, against the Linen port, and the zoo's deliberate
mistakes made in them.

Measured on the seeded checkpoints, batch 2 (CPU): torch vs NNX max abs 3.8e-6 (ResNet-18),
5.3e-6 (ResNet-50), 3.4e-6 (ViT-Ti/16), 4.4e-6 (ViT-B/16) in float32; 0.0625, 0.0625, 0.055,
0.0625 in bfloat16: the Linen ports' figures, NNX and Linen logits being bit for bit the same
in both dtypes (in float32 XLA compiles the same optimized HLO for both). The mutations exceed
the float32 tolerance as much as in the Linen ports (see MUTATIONS). ResNet-34/101/152, ViT-B/32
and ViT-L/16 are registered and checked only for their variable tree and parameter count.
Cost on 2 CPU cores: the parity-marked tests add 40 s to the main job (50 s with no XLA cache),
the others 24 s to the whole suite.
"""

import math

import numpy as np
import pytest

from models.golden import CHECKPOINT_SEED, golden_inputs
from models.registry import NNX_TWINS, PARAM_COUNTS
from pytest_parity import assert_close, registry
from pytest_parity.compare import compare
from tests.support.ties import assert_same_top

# The NNX twins run with the whole zoo; the main job's NNX
# coverage is tests/parity/test_layer_catalogue_nnx.py (the twins here add 41 s to it)
pytestmark = pytest.mark.zoo_all

RUN = ["resnet18_nnx", "resnet50_nnx", "vit_b_16_nnx", "vit_ti_16_nnx"]


def _top(logits, k):
    return [set(row) for row in np.argsort(-logits.astype(np.float32), axis=-1)[:, :k]]


@pytest.mark.parity(dtypes=["float32", "bfloat16"])
@pytest.mark.parametrize("name", RUN)
def test_torch_and_nnx_logits_agree(parity_pair, parity_dtype, random_images, name):
    pair = parity_pair(name)
    result = pair.assert_close(random_images, name=f"{name} logits")
    torch_logits, nnx_logits = result.torch, result.flax
    assert str(torch_logits.dtype) == str(nnx_logits.dtype) == parity_dtype
    assert 1.0 < np.abs(torch_logits.astype(np.float32)).max() < 50.0
    # classes within the comparison's tolerance of each other may swap (a bfloat16 step is
    # 0.0625 at logits of 10; ViT-B/16's top two are 0.066 apart in one row)
    for k in (1, 5):
        assert_same_top(nnx_logits, torch_logits, result.comparison.leaves[0], k)


@pytest.mark.parity(devices=["cpu"], dtypes=["float32"])  # the goldens are float32 CPU logits
@pytest.mark.parametrize("name", RUN)
def test_nnx_logits_match_the_twins_golden_logits(parity_pair, parity_seed, parity_golden, name):
    """torchvision's golden logits of the twin (reference_outputs/<twin>.npz), which
    test_zoo_golden.py keeps; the NNX port is only ever compared with them."""
    if parity_seed != CHECKPOINT_SEED:
        pytest.skip(f"the goldens are computed from seed {CHECKPOINT_SEED}'s checkpoint; "
                    f"this run uses --parity-seed={parity_seed}")
    twin = NNX_TWINS[name]
    pair = parity_pair(name)
    expected = parity_golden.read(twin)
    assert expected.manifest["checkpoint"]["digest"] == pair.checkpoint.digest()
    for key, (images, _) in golden_inputs(twin).items():
        logits = pair.flax_forward(images)
        assert_close(logits, expected.outputs[key], name=f"{name} {key}: nnx vs golden",
                     **pair.tolerance())
        top5 = expected.manifest["outputs"][key]["top5"]
        assert [int(np.argmax(row)) for row in logits] == [row[0] for row in top5]
        assert _top(logits, 5) == [set(row) for row in top5]


@pytest.mark.parity(devices=["cpu"], dtypes=["float32"])
@pytest.mark.parametrize("name", RUN)
def test_nnx_and_linen_ports_compute_the_same_logits(parity_pair, random_images, name):
    nnx_pair, linen_pair = parity_pair(name), parity_pair(NNX_TWINS[name])
    assert nnx_pair.checkpoint.digest() == linen_pair.checkpoint.digest()  # the twin's file
    nnx_logits = nnx_pair.flax_forward(random_images)
    linen_logits = linen_pair.flax_forward(random_images)
    assert np.array_equal(nnx_logits, linen_logits), \
        f"max abs NNX vs Linen {np.abs(nnx_logits - linen_logits).max():.3g}"


def _tanh_gelu(monkeypatch):
    from flax import nnx

    exact = nnx.gelu
    monkeypatch.setattr(nnx, "gelu", lambda x, approximate=False: exact(x, True))


def _layer_norm_epsilon_1e5(monkeypatch):
    from models.vit import nnx_model

    monkeypatch.setattr(nnx_model, "LAYER_NORM_EPSILON", 1e-5)


def _swap_first_batch_norm_scale_and_var(variables):
    params, stats = variables["params"]["bn1"], variables["batch_stats"]["bn1"]
    params["scale"], stats["var"] = stats["var"], params["scale"]


# test_mutations_detected.py's mistakes, made in the NNX ports. Measured excess over the
# float32 tolerance: 80x (tanh GELU), 1660x (epsilon 1e-5), 2.3e5x (swapped BatchNorm), as in
# the Linen ports.
MUTATIONS = {
    "vit-tanh-gelu": ("vit_b_16_nnx", _tanh_gelu, None),
    "vit-layer-norm-epsilon-1e-5": ("vit_b_16_nnx", _layer_norm_epsilon_1e5, None),
    "resnet-batch-norm-scale-var-swapped": ("resnet50_nnx", None,
                                            _swap_first_batch_norm_scale_and_var),
}


@pytest.mark.parity(devices=["cpu"], dtypes=["float32"])
@pytest.mark.parametrize("mutation", MUTATIONS)
def test_mutations_of_the_nnx_ports_are_detected(parity_pair, random_images, monkeypatch,
                                                mutation):
    import copy

    import jax

    from pytest_parity.nnx_bridge import port

    name, patch_code, edit_variables = MUTATIONS[mutation]
    pair = parity_pair(name)
    # The pair's own apply traced first, unpatched: traced under the patch, it would keep
    # the mistake for every later test of this cached pair.
    correct = pair.flax_forward(random_images)
    variables = copy.deepcopy(pair.flax_variables)
    if patch_code:
        patch_code(monkeypatch)  # before the module is built (epsilon) and traced (GELU)
    if edit_variables:
        edit_variables(variables)
    mutated_apply = jax.jit(port(registry.get(name).flax_model).apply)
    logits = np.asarray(mutated_apply(variables, pair.pair.input_layout.to_flax(random_images)))
    assert not np.array_equal(logits, correct), "the mutation changed nothing"
    result = compare(logits, pair.torch_forward(random_images), name=f"{name} ({mutation})")
    assert not result.passed and result.margin > 50, result


def test_every_zoo_model_has_an_nnx_twin_registered_with_its_pair():
    assert sorted(NNX_TWINS.values()) == sorted(PARAM_COUNTS)
    for name, twin in NNX_TWINS.items():
        pair, linen = registry.get(name), registry.get(twin)
        assert (pair.torch_model, pair.mapping, pair.tolerances, pair.preprocess,
                pair.checkpoint, pair.input_shape) == (
                    linen.torch_model, linen.mapping, linen.tolerances, linen.preprocess,
                    linen.checkpoint, linen.input_shape)
        assert pair.golden is None  # its goldens are the twin's: torchvision's logits


@pytest.mark.parametrize("name", sorted(NNX_TWINS))
def test_nnx_ports_have_the_linen_tree_and_the_pinned_parameter_count(name):
    """The NNX state, addressed as the plugin does (params/..., batch_stats/...), has the Linen
    port's variables: the same paths, shapes and dtypes; built abstractly (no initializer)."""
    from pytest_parity.checkpoint.flax_variables import expected_variables
    from pytest_parity.nnx_bridge import port

    twin = registry.get(NNX_TWINS[name])
    args, kwargs = twin.flax_examples()
    linen = expected_variables(twin.flax_model(), args, kwargs)
    nnx_variables = port(registry.get(name).flax_model).variable_shapes()
    assert nnx_variables == linen
    params = sum(math.prod(shape) for path, (shape, _) in nnx_variables.items()
                 if path.startswith("params/"))
    assert params == PARAM_COUNTS[NNX_TWINS[name]]


def test_the_twins_checkpoint_restores_into_the_nnx_port_through_parity_convert(
        parity_checkpoint, parity_seed, parity_golden, tmp_path):
    """resnet18's seeded checkpoint, which resnet18_nnx reuses, through `parity convert` to an
    NNX state file, restored as Flax's NNX checkpointing guide restores one (an abstract model,
    nnx.replace_by_pure_dict, nnx.merge) and run: torchvision's golden logits; and back to a
    canonical checkpoint with --arch resnet18_nnx, bit for bit."""
    from flax import nnx
    from flax.serialization import msgpack_restore

    from models.resnet import nnx_model
    from pytest_parity.checkpoint import load, save
    from pytest_parity.cli import main

    if parity_seed != CHECKPOINT_SEED:
        pytest.skip(f"the goldens are computed from seed {CHECKPOINT_SEED}'s checkpoint")
    checkpoint = parity_checkpoint("resnet18_nnx")
    assert checkpoint.architecture == "resnet18"  # the twin's file
    save(tmp_path / "resnet18.h5", checkpoint)
    assert main(["convert", str(tmp_path / "resnet18.h5"), str(tmp_path / "r18.nnx.msgpack")]) == 0

    graphdef, state = nnx.split(nnx.eval_shape(lambda: nnx_model.ResNet18(rngs=nnx.Rngs(0))))
    nnx.replace_by_pure_dict(state, msgpack_restore((tmp_path / "r18.nnx.msgpack").read_bytes()))
    model = nnx.merge(graphdef, state)
    images, _ = golden_inputs("resnet18")["random"]
    logits = nnx.jit(lambda module, x: module(x))(model, np.moveaxis(images, 1, -1))
    np.testing.assert_allclose(np.asarray(logits), parity_golden.read("resnet18").outputs["random"],
                               rtol=1.3e-6, atol=1e-5)  # the float32 defaults

    assert main(["convert", str(tmp_path / "r18.nnx.msgpack"), str(tmp_path / "back.h5"),
                 "--arch", "resnet18_nnx"]) == 0
    back = load(tmp_path / "back.h5")
    mapping = registry.get("resnet18_nnx").mapping
    assert back.architecture == "resnet18_nnx"
    assert sorted(back.arrays) == sorted(path for path in checkpoint.arrays  # not torch's
                                         if mapping.rule_for(path).collection is not None)
    for path, array in back.arrays.items():
        assert array.dtype == checkpoint.arrays[path].dtype
        assert np.array_equal(array, checkpoint.arrays[path]), path
