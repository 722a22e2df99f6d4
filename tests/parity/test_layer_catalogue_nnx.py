"""The layer catalogue again, with Flax NNX on the Flax side: each test of
tests/parity/test_layer_catalogue.py but the activations and pooling, same name, same torch
layer, same strategy, examples and tolerances, against the NNX layer (`flax.nnx`, built
abstractly by the plugin, weights copied by the automatic mapping), in float32 and bfloat16.

NNX defaults that differ from torch's are set to torch's: LayerNorm and GroupNorm epsilon (NNX
1e-6, torch 1e-5), BatchNorm momentum (NNX 0.99; torch's 0.1 is 0.9 in Flax's convention; unused
in eval, set so the layer is torch's). Activations and pooling are the same functions in both
APIs (`nnx.relu is nn.relu`): their cases are the Linen file's alone, and a test here asserts
that they are the same. One test more than the Linen file: LayerNorm's epsilon on inputs
of small variance, where a wrong epsilon shows.

The torch sides, `with_random_statistics` and the measured tolerances are imported from the
Linen catalogue, so the two files compare the same torch layers under the same bounds.
"""

from functools import partial

import pytest

from models.resnet.batch_norm import NNXBatchNorm
from pytest_parity import parity_test
from pytest_parity.strategies import image_batches, sequence_batches, token_batches
from tests.parity.test_layer_catalogue import (
    DTYPES,
    TorchPatchEmbedding,
    TorchSelfAttention,
    _torch_bottleneck,
    _torch_encoder_block,
    with_random_statistics,
)

# The NNX catalogue runs with --zoo=all (the whole suite and CI): it repeats the Linen
# catalogue through the NNX bridge, 16 s of the main job's 82 s (tests/parity/ is otherwise
# the main job's)
pytestmark = pytest.mark.zoo_all

torch = pytest.importorskip("torch")
nnx = pytest.importorskip("flax.nnx")

parity_case = partial(parity_test, dtypes=DTYPES, max_examples=12)


# Convolutions ---------------------------------------------------------------------------

@parity_case(torch=lambda: torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
             flax=lambda: nnx.Conv(3, 8, (3, 3), strides=2, padding=((1, 1), (1, 1)),
                                   rngs=nnx.Rngs(0)),
             inputs=image_batches(channels=3))
def test_conv2d_strided(result):
    assert result.examples == 12


@parity_case(torch=lambda: torch.nn.Conv2d(3, 8, (3, 5), padding=(1, 2)),
             flax=lambda: nnx.Conv(3, 8, (3, 5), padding=((1, 1), (2, 2)), rngs=nnx.Rngs(0)),
             inputs=image_batches(channels=3))
def test_conv2d_explicit_padding_per_axis(result):
    pass


@parity_case(torch=lambda: torch.nn.Sequential(torch.nn.ZeroPad2d((0, 2, 1, 0)),
                                               torch.nn.Conv2d(3, 8, 3)),
             flax=lambda: nnx.Conv(3, 8, (3, 3), padding=((1, 0), (0, 2)), rngs=nnx.Rngs(0)),
             inputs=image_batches(channels=3))
def test_conv2d_asymmetric_padding(result):
    pass


# torch warns that it pads a copy of the input for an even kernel: expected here.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@parity_case(torch=lambda: torch.nn.Conv2d(3, 8, 4, padding="same"),
             flax=lambda: nnx.Conv(3, 8, (4, 4), padding="SAME", rngs=nnx.Rngs(0)),
             inputs=image_batches(channels=3))
def test_conv2d_same_padding_even_kernel(result):
    pass


@parity_case(torch=lambda: torch.nn.Conv2d(3, 8, 3, padding=2, dilation=2),
             flax=lambda: nnx.Conv(3, 8, (3, 3), padding=((2, 2), (2, 2)), kernel_dilation=2,
                                   rngs=nnx.Rngs(0)),
             inputs=image_batches(channels=3))
def test_conv2d_dilated(result):
    pass


@parity_case(torch=lambda: torch.nn.Conv2d(4, 8, 3, padding=1, groups=2),
             flax=lambda: nnx.Conv(4, 8, (3, 3), padding=((1, 1), (1, 1)),
                                   feature_group_count=2, rngs=nnx.Rngs(0)),
             inputs=image_batches(channels=4))
def test_conv2d_grouped(result):
    pass


@parity_case(torch=lambda: torch.nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False),
             flax=lambda: nnx.Conv(6, 6, (3, 3), padding=((1, 1), (1, 1)),
                                   feature_group_count=6, use_bias=False, rngs=nnx.Rngs(0)),
             inputs=image_batches(channels=6))
def test_conv2d_depthwise(result):
    assert result.mapping.describe()[1].endswith("Transpose(perm=(2, 3, 1, 0))")


# As in the Linen file: torch's output is 2H; lax pads the dilated input by 1 before and 2 after.
@parity_case(torch=lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1,
                                                    output_padding=1),
             flax=lambda: nnx.ConvTranspose(4, 6, (3, 3), strides=(2, 2),
                                            padding=((1, 2), (1, 2)), transpose_kernel=True,
                                            rngs=nnx.Rngs(0)),
             inputs=image_batches(channels=4, max_size=16))
def test_conv_transpose2d_flax_transposes_the_kernel(result):
    pass


@parity_case(torch=lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1,
                                                    output_padding=1),
             flax=lambda: nnx.ConvTranspose(4, 6, (3, 3), strides=(2, 2),
                                            padding=((1, 2), (1, 2)), rngs=nnx.Rngs(0)),
             inputs=image_batches(channels=4, max_size=16))
def test_conv_transpose2d_mapping_flips_the_kernel(result):
    pass


# Dense and normalisation ----------------------------------------------------------------

@parity_case(torch=lambda: torch.nn.Linear(16, 8),
             flax=lambda: nnx.Linear(16, 8, rngs=nnx.Rngs(0)))
def test_linear(result):
    pass


@parity_case(torch=lambda: with_random_statistics(torch.nn.LayerNorm(16)),
             flax=lambda: nnx.LayerNorm(16, epsilon=1e-5, rngs=nnx.Rngs(0)),
             inputs=sequence_batches(features=16, min_value=-3.0, max_value=5.0))
def test_layer_norm(result):
    pass


# Not in the Linen file. On test_layer_norm's inputs (variance ~5) epsilon hardly matters:
# NNX's default 1e-6 there instead of torch's 1e-5 passed (float32 margin 0.42). At variance
# ~3e-5 the same mistake fails by margins of 9.7e3 (float32) and 4.3 (bfloat16).
@parity_case(torch=lambda: with_random_statistics(torch.nn.LayerNorm(16)),
             flax=lambda: nnx.LayerNorm(16, epsilon=1e-5, rngs=nnx.Rngs(0)),
             inputs=sequence_batches(features=16, min_value=-0.01, max_value=0.01))
def test_layer_norm_epsilon_on_small_variance(result):
    pass


# The zoo's BatchNorm, as in the Linen file (nnx.BatchNorm rounds as Linen's does).
@parity_case(torch=lambda: with_random_statistics(torch.nn.BatchNorm2d(6)),
             flax=lambda: NNXBatchNorm(6, use_running_average=True, momentum=0.9,
                                       epsilon=1e-5, rngs=nnx.Rngs(0)),
             inputs=image_batches(channels=6))
def test_batch_norm_eval(result):
    assert "batch_stats" in result.flax_variables


@parity_case(torch=lambda: with_random_statistics(torch.nn.GroupNorm(2, 6)),
             flax=lambda: nnx.GroupNorm(6, num_groups=2, epsilon=1e-5, rngs=nnx.Rngs(0)),
             inputs=image_batches(channels=6))
def test_group_norm(result):
    pass


@parity_case(torch=lambda: torch.nn.Embedding(50, 16),
             flax=lambda: nnx.Embed(50, 16, rngs=nnx.Rngs(0)),
             inputs=token_batches(vocab_size=50))
def test_embedding(result):
    assert result.mapping.describe()[1] == "  weight -> embedding [ND, params] Identity()"


# Activations and pooling ----------------------------------------------------------------

# NNX's activations and pooling are Linen's own functions, so the Linen catalogue's cases
# (test_relu, test_gelu_exact, test_gelu_tanh, test_silu, the max and avg pools) already run
# them; repeating those 8 cases here would time the same function twice. Should Flax ever give
# NNX its own, this fails and the cases come back.
@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "max_pool", "avg_pool"])
def test_activations_and_pooling_are_linens(name):
    linen = pytest.importorskip("flax.linen")
    assert getattr(nnx, name) is getattr(linen, name)


# Attention and blocks -------------------------------------------------------------------

# decode=False: no autoregressive cache; no dropout (rate 0), so no RNG is drawn.
@parity_case(torch=TorchSelfAttention,
             flax=lambda: nnx.MultiHeadAttention(num_heads=4, in_features=16, decode=False,
                                                 deterministic=True, rngs=nnx.Rngs(0)),
             inputs=sequence_batches(features=16))
def test_multihead_attention(result):
    assert result.mapping.describe()[1].startswith("  attention.in_proj_weight -> query/kernel")


# torch's BatchNorm2d: epsilon 1e-5, momentum 0.1 (0.9 in Flax's convention), eval mode.
_batch_norm = partial(NNXBatchNorm, use_running_average=True, momentum=0.9, epsilon=1e-5)


class Downsample(nnx.Module):
    """The projection shortcut: a strided 1x1 convolution and a BatchNorm."""

    def __init__(self, in_features, features, stride, *, rngs):
        self.conv = nnx.Conv(in_features, features, (1, 1), strides=stride,
                             padding=((0, 0), (0, 0)), use_bias=False, rngs=rngs)
        self.bn = _batch_norm(features, rngs=rngs)

    def __call__(self, x):
        return self.bn(self.conv(x))


class Bottleneck(nnx.Module):
    """torchvision's Bottleneck (1x1 reduce, strided 3x3, 1x1 expand by 4) with a projection
    shortcut; attributes in call order, as models/resnet/flax_model.py names them."""

    def __init__(self, in_features, planes, stride, *, rngs):
        conv = partial(nnx.Conv, use_bias=False, rngs=rngs)
        self.conv1 = conv(in_features, planes, (1, 1), padding=((0, 0), (0, 0)))
        self.bn1 = _batch_norm(planes, rngs=rngs)
        self.conv2 = conv(planes, planes, (3, 3), strides=stride, padding=((1, 1), (1, 1)))
        self.bn2 = _batch_norm(planes, rngs=rngs)
        self.conv3 = conv(planes, planes * 4, (1, 1), padding=((0, 0), (0, 0)))
        self.bn3 = _batch_norm(planes * 4, rngs=rngs)
        self.downsample = Downsample(in_features, planes * 4, stride, rngs=rngs)

    def __call__(self, x):
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = nnx.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return nnx.relu(self.downsample(x) + y)


@parity_test(torch=_torch_bottleneck,
             flax=lambda: Bottleneck(32, planes=16, stride=2, rngs=nnx.Rngs(0)),
             dtypes=DTYPES, max_examples=8, inputs=image_batches(channels=32, max_size=16))
def test_resnet_bottleneck_block(result):
    assert len(result.mapping.rules) == 24  # 4 convs, and 4 batch norms of 5 tensors each


class MlpBlock(nnx.Module):
    """Linear, exact GELU, Linear (torchvision's MLPBlock: keys mlp.0 and mlp.3)."""

    def __init__(self, features, mlp_dim, *, rngs):
        self.fc1 = nnx.Linear(features, mlp_dim, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_dim, features, rngs=rngs)

    def __call__(self, x):
        return self.fc2(nnx.gelu(self.fc1(x), approximate=False))


class EncoderBlock(nnx.Module):
    """Pre-norm self-attention and MLP, each with a residual connection (torchvision's
    EncoderBlock: LayerNorm epsilon 1e-6, which is NNX's default, set here to say so)."""

    def __init__(self, num_heads, hidden_dim, mlp_dim, *, rngs):
        norm = partial(nnx.LayerNorm, hidden_dim, epsilon=1e-6, rngs=rngs)
        self.ln_1 = norm()
        self.attention = nnx.MultiHeadAttention(num_heads=num_heads, in_features=hidden_dim,
                                                decode=False, deterministic=True, rngs=rngs)
        self.ln_2 = norm()
        self.mlp = MlpBlock(hidden_dim, mlp_dim, rngs=rngs)

    def __call__(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


@parity_case(torch=_torch_encoder_block,
             flax=lambda: EncoderBlock(num_heads=4, hidden_dim=32, mlp_dim=64, rngs=nnx.Rngs(0)),
             inputs=sequence_batches(features=32))
def test_vit_encoder_block(result):
    pass


class PatchEmbedding(nnx.Module):
    def __init__(self, *, rngs):
        self.projection = nnx.Conv(3, 24, (8, 8), strides=(8, 8), padding="VALID", rngs=rngs)

    def __call__(self, images):
        patches = self.projection(images)
        return patches.reshape(patches.shape[0], -1, patches.shape[-1])


@parity_case(torch=TorchPatchEmbedding, flax=lambda: PatchEmbedding(rngs=nnx.Rngs(0)),
             inputs=image_batches(channels=3, min_size=8))
def test_patch_embedding(result):
    pass
