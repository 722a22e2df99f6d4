"""What a `@parity_test` example costs, with and without shape buckets, in one run; and the
automatic mapping of ResNet-50. Examples per second are printed at the end of the run
(tests/benchmarks/conftest.py); target: >= 20 examples/s with buckets on this CPU."""

import pytest

from pytest_parity import automatic_mapping, registry
from pytest_parity.run import check_parity
from pytest_parity.strategies import image_batches

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nn = pytest.importorskip("flax.linen")

EXAMPLES = 30


@pytest.mark.parametrize("bucketed", [True, False], ids=["bucketed", "unbucketed"])
@pytest.mark.benchmark(group="parity_test")
def test_parity_test_examples(benchmark, bucketed):
    def check():
        return check_parity(torch=lambda: torch.nn.Conv2d(3, 8, 3, padding=1),
                            flax=lambda: nn.Conv(8, (3, 3), padding=((1, 1), (1, 1))),
                            inputs=image_batches(channels=3, min_size=8, max_size=32,
                                                 bucketed=bucketed),
                            max_examples=EXAMPLES)

    result = benchmark.pedantic(check, rounds=5, iterations=1)
    benchmark.extra_info.update(examples=result.examples, compilations=result.compilations)
    assert result.examples == EXAMPLES


@pytest.mark.benchmark(group="automap")
def test_automatic_mapping_of_resnet50(benchmark):
    pair = registry.get("resnet50")
    with torch.device("meta"):
        model = pair.torch_model()
    images = jax.ShapeDtypeStruct((1, 64, 64, 3), jax.numpy.float32)
    mapping = benchmark.pedantic(automatic_mapping, args=(model, pair.flax_model(), images),
                                 rounds=5, iterations=1, warmup_rounds=1)
    assert len(mapping.rules) == 320
