"""Fuzzing what a person writes by hand: mapping files and the parity marker's arguments.

A damaged mapping file either loads as exactly what it says or is a [parity] error naming the
file; one damaged so that it means something else (a type changed, a field deleted, a list
emptied, a value buried in lists) must never load. A marker's arguments are either valid or
a 'parity marker' ValueError (a collection error), never another exception.
"""

import json
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_parity.cases import MARKER_DEVICES, MarkerSpec, read_marker
from pytest_parity.compare.tolerance import resolve_layers
from pytest_parity.mapping import Mapping, load_mapping, save_mapping
from pytest_parity.mapping.layer_rules import attention_rules
from pytest_parity.options import DTYPE_CHOICES
from tests.support.fuzz import fuzz_settings, no_hang, outcome
from tests.support.tinynet import TINYNET

jax = pytest.importorskip("jax")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """tinynet's automatic mapping and an attention layer's rules (a split and a chain), saved;
    the mapping and the file's bytes."""
    from pytest_parity.mapping import automatic_mapping

    automatic = automatic_mapping(TINYNET.torch_model(), TINYNET.flax_model(),
                                  jax.ShapeDtypeStruct((1, 8, 8, 3), np.float32),
                                  name="tinynet")
    mapping = Mapping(automatic.architecture, (*automatic.rules, *attention_rules(
        "attn", "attn", num_heads=2, embed_dim=4)))
    path = save_mapping(mapping, tmp_path_factory.mktemp("mapping") / "mapping.json")
    return mapping, path.read_bytes()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6)


def _kind(value):
    return type(value).__name__  # null, bool, int, float, str, list, dict: JSON's own types


def _locations(node, where=()):
    """Every place in the document, the root included, as a path of keys and indices."""
    yield where
    children = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, child in children:
        yield from _locations(child, (*where, key))


def _replace(document, where, value):
    if not where:
        return value
    node = document
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return document


def _at(document, where):
    for key in where:
        document = document[key]
    return document


def _mutated(data, document):
    """A mutation of the document that changes what it means: (document, description)."""
    where = data.draw(st.sampled_from(list(_locations(document))), label="where")
    current = _at(document, where)
    how = data.draw(st.sampled_from(["retype", "delete", "empty", "bury"]), label="how")
    if how == "delete" and isinstance(current, dict) and current:
        key = data.draw(st.sampled_from(sorted(current)), label="key")
        del current[key]
    elif how == "empty" and isinstance(current, (list, dict)) and current:
        current.clear()
    elif how == "bury":
        depth = data.draw(st.sampled_from([1, 2, 50, 999, 5000, 100_000]), label="depth")
        buried = current
        for _ in range(depth):
            buried = [buried]
        document = _replace(document, where, buried)
    else:
        # A torch-only buffer's collection may be null or a name: both are valid rules.
        collection = where[-1:] == ("collection",)
        value = data.draw(JSON.filter(lambda v: _kind(v) != _kind(current) and not (
            collection and (v is None or isinstance(v, str)))), label="value")
        document = _replace(document, where, value)
    return document


def _saved_form(mapping, tmp_path):
    path = save_mapping(mapping, tmp_path / "again.json", overwrite=True)
    return json.loads(path.read_text())


def test_fuzz_mapping_file_mutated_as_json_never_loads(request, tmp_path, original):
    mapping, data_bytes = original
    path = tmp_path / "mapping.json"

    @fuzz_settings(request)
    @given(data=st.data())
    def run(data):
        document = _mutated(data, json.loads(data_bytes))
        try:
            text = json.dumps(document)
        except RecursionError:  # buried deeper than json writes: write the brackets directly
            text = "[" * 100_000 + "]" * 100_000
        path.write_text(text)
        result, loaded = outcome(lambda: load_mapping(path), [path])
        assert result == "error" or loaded == mapping, f"damaged content loaded: {text[:300]}"

    run()


def test_fuzz_mapping_file_corrupted_bytes_load_as_written_or_fail(request, tmp_path, original):
    mapping, data_bytes = original
    path = tmp_path / "mapping.json"

    @fuzz_settings(request)
    @given(data=st.data())
    def run(data):
        damaged = bytearray(data_bytes)
        for _ in range(data.draw(st.integers(1, 4), label="edits")):
            at = data.draw(st.integers(0, max(len(damaged) - 1, 0)), label="at")
            edit = data.draw(st.sampled_from(["flip", "set", "delete", "insert", "cut"]))
            if edit == "flip" and damaged:
                damaged[at] ^= 1 << data.draw(st.integers(0, 7))
            elif edit == "set" and damaged:
                damaged[at] = data.draw(st.integers(0, 255))
            elif edit == "delete":
                del damaged[at:at + data.draw(st.integers(1, 16))]
            elif edit == "insert":
                damaged[at:at] = data.draw(st.binary(min_size=1, max_size=8))
            else:
                del damaged[at:]
        path.write_bytes(bytes(damaged))
        result, loaded = outcome(lambda: load_mapping(path), [path])
        if result == "ok" and loaded != mapping:
            # It parsed: then it must mean exactly what the bytes say, nothing dropped or
            # guessed (a changed layout letter is a different, valid mapping).
            assert _saved_form(loaded, tmp_path) == json.loads(bytes(damaged)), bytes(damaged)

    run()


def _generator(names):
    return (name for name in names)


ODD = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(10**300, 10**5000), st.floats(),
    st.text(max_size=10), st.sampled_from([*MARKER_DEVICES, *DTYPE_CHOICES, "tpu", "float33"]),
    st.lists(st.sampled_from([*MARKER_DEVICES, *DTYPE_CHOICES, 1, None]), max_size=3),
    st.lists(st.sampled_from(DTYPE_CHOICES), max_size=3).map(tuple),
    st.frozensets(st.sampled_from([*MARKER_DEVICES, *DTYPE_CHOICES])),
    st.lists(st.sampled_from(DTYPE_CHOICES), max_size=2).map(_generator),
    st.dictionaries(st.sampled_from([*DTYPE_CHOICES, "float33", "default", 1]),
                    st.floats() | st.integers() | st.text(max_size=3) | st.booleans(),
                    max_size=3),
    st.sampled_from([int, float, str, bytes, complex, Decimal, Fraction, range, object,
                     list, dict]).flatmap(st.from_type),
    st.floats(width=32).map(np.float32), st.integers(-5, 5).map(np.int64),
    st.builds(lambda v: np.array([v]), st.floats()),
)


def _valid(spec):
    assert isinstance(spec, MarkerSpec)
    for names, allowed in ((spec.devices, MARKER_DEVICES), (spec.dtypes, DTYPE_CHOICES)):
        assert names is None or (isinstance(names, tuple) and names
                                 and all(name in allowed for name in names)), names
    for tolerance in (spec.rtol, spec.atol):
        values = tolerance.values() if isinstance(tolerance, dict) else [tolerance]
        assert tolerance is None or all(
            type(value) is float and math.isfinite(value) and value >= 0 for value in values)
        assert not isinstance(tolerance, dict) or set(tolerance) <= set(DTYPE_CHOICES)
    for dtype in DTYPE_CHOICES:  # what the case's comparison will do with it: no OverflowError
        resolve_layers([dtype], [spec.layer()])


def test_fuzz_marker_arguments_are_valid_or_a_marker_error(request):
    @fuzz_settings(request)
    @given(args=st.lists(ODD, max_size=2) | st.just([]),
           kwargs=st.dictionaries(st.sampled_from(["devices", "dtypes", "rtol", "atol"])
                                  | st.text(max_size=6), ODD, max_size=4))
    def run(args, kwargs):
        mark = pytest.mark.parity.with_args(*args, **kwargs).mark
        with no_hang():
            try:
                spec = read_marker(mark)
            except ValueError as error:
                assert str(error).startswith("parity marker"), error
                return
        _valid(spec)
        assert read_marker(mark) == spec  # read again when the test runs: the same

    run()
