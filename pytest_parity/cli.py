"""The `parity` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from pytest_parity.errors import PREFIX, ParityError


def _env(arguments: argparse.Namespace) -> int:
    from pytest_parity.environment import describe

    print(describe())
    return 0


def _canonical(path: str, verb: str) -> Any:
    """The canonical checkpoint at `path`; another kind of file is told how to convert it."""
    from pathlib import Path

    from pytest_parity.checkpoint import load

    suffix = Path(path).suffix
    if suffix in (".pt", ".pth", ".bin", ".safetensors", ".msgpack", ".npz", ".json"):
        raise ParityError(
            f"{path}: `parity {verb}` reads canonical .h5 checkpoints, not {suffix} "
            f"files; convert it first: parity convert {path} {Path(path).with_suffix('.h5')} "
            "--arch NAME (NAME: a registered architecture)")
    return load(path)


def _inspect(arguments: argparse.Namespace) -> int:
    from pytest_parity.checkpoint import describe_tree, list_keys

    checkpoint = _canonical(arguments.file, "inspect")
    print("\n".join(list_keys(checkpoint) if arguments.keys else describe_tree(checkpoint)))
    return 0


def _diff(arguments: argparse.Namespace) -> int:
    from pytest_parity.checkpoint import diff_lines

    lines, differ = diff_lines(_canonical(arguments.a, "diff"), _canonical(arguments.b, "diff"))
    print("\n".join(lines))
    return 1 if differ else 0


def _convert(arguments: argparse.Namespace) -> int:
    from pytest_parity.checkpoint import convert_file, read_key_list

    keys = read_key_list(arguments.keys) if arguments.keys else None
    print(convert_file(arguments.source, arguments.target, architecture=arguments.arch,
                       keys=keys, overwrite=arguments.overwrite))
    return 0


def _golden(arguments: argparse.Namespace) -> int:
    from pytest_parity import golden, registry

    names = arguments.names or [name for name in registry.names()
                                if registry.get(name).golden is not None]
    for name in names:
        pair = registry.get(name)
        if pair.golden is None:
            raise ParityError(f"{name}: its pair registers no golden factory")
        outputs, manifest = pair.golden()
        for path in golden.write(arguments.dir, name, outputs, manifest,
                                 update=arguments.update):
            print(f"wrote {path}")
    return 0


def _photo_batch(pair: Any) -> Any:
    """The real photo that ships with matplotlib, preprocessed the pair's original way."""
    from matplotlib import cbook
    from PIL import Image

    if pair.preprocess is None or pair.named_inputs:
        raise ParityError(f"{pair.name}: its pair registers no preprocess for a "
                          "photo; use --input random")
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        return pair.preprocess(image.convert("RGB"))


def _trace(arguments: argparse.Namespace) -> int:
    from pytest_parity import devices, numerics, registry
    from pytest_parity.caches import tmp_checkpoints_dir
    from pytest_parity.checkpoint import load
    from pytest_parity.run import checkpoint_for, load_pair

    problems = devices.missing_frameworks()
    if arguments.device == "gpu" and not problems:
        problems = devices.gpu_problems()
    if not problems and devices.dtype_problem(arguments.device, arguments.dtype):
        problems = [str(devices.dtype_problem(arguments.device, arguments.dtype))]
    if problems:
        raise ParityError(f"parity trace on {arguments.device}: {'; '.join(problems)}")
    pair = registry.get(arguments.arch)
    checkpoint = (load(arguments.checkpoint, architecture=pair.name) if arguments.checkpoint
                  else checkpoint_for(pair, arguments.seed, tmp_checkpoints_dir()))
    inputs = (_photo_batch(pair) if arguments.input == "photo"
              else pair.example_inputs(arguments.seed))
    with numerics.applied("pinned", arguments.seed):  # as a parity case runs
        loaded = load_pair(pair, checkpoint, arguments.device, arguments.dtype)
        try:
            diagnosis = loaded.diagnose(inputs)
        except Exception as error:  # said in one line, exit status 2: never "found something"
            raise ParityError(f"{pair.name}: no diagnosis: it failed with "
                              f"{type(error).__name__}: {error}") from None
    culprit = diagnosis.trace.culprit
    print(f"{pair.name} on {arguments.device} in {arguments.dtype}, input {arguments.input}: "
          + ("the outputs differ" if culprit else "no module diverges"))
    print("\n".join(diagnosis.lines()))
    return 1 if diagnosis.found else 0


def _cache(arguments: argparse.Namespace) -> int:
    from pathlib import Path

    from pytest_parity import caches

    if arguments.rootdir is not None and not Path(arguments.rootdir).is_dir():
        raise ParityError(f"--rootdir {arguments.rootdir}: not a directory")
    root = (Path(arguments.rootdir).absolute() if arguments.rootdir is not None
            else caches.project_root(Path.cwd()))
    if arguments.clear is None:
        print("\n".join(caches.listing(root)))
        return 0
    name = None if arguments.clear == _ALL else arguments.clear
    chosen = caches.select(caches.plugin_caches(root), name)
    print("\n".join(caches.clear_all(chosen, root)))
    return 0


_ALL = "all"  # `parity cache --clear` with no NAME


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parity", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    env = verbs.add_parser("env", help="print versions and devices of torch and jax")
    env.set_defaults(run=_env)
    inspect = verbs.add_parser("inspect", help="show a canonical checkpoint's tensors")
    inspect.add_argument("file", metavar="FILE")
    inspect.add_argument("--keys", action="store_true", help="print a flat list of keys only")
    inspect.set_defaults(run=_inspect)
    convert = verbs.add_parser(
        "convert", help="convert between torch state dicts, Flax variables, canonical .h5, "
                        ".npz and .json",
        description="torch .pt/.pth/.safetensors or Flax .msgpack -> canonical .h5 (needs "
                    "--arch); canonical .h5 -> .pt/.safetensors, .msgpack, .npz, .json or a "
                    "smaller .h5. The architectures are those registered by the project's "
                    "[tool.parity] zoo modules.")
    convert.add_argument("source", metavar="SRC")
    convert.add_argument("target", metavar="DST")
    convert.add_argument("--arch", metavar="NAME",
                         help="registered architecture (default: the one a .h5 declares)")
    convert.add_argument("--keys", metavar="FILE",
                         help="keep only the keys listed in FILE, one per line")
    convert.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    convert.set_defaults(run=_convert)
    golden = verbs.add_parser(
        "golden", help="write golden outputs of the original implementation, with provenance",
        description="Compute each pair's golden outputs with its original implementation and "
                    "write NAME.npz and NAME.json (provenance) to DIR. Refuses under CI=true; "
                    "existing files are rewritten only with --update.")
    golden.add_argument("names", metavar="NAME", nargs="*",
                        help="registered pairs (default: every pair with a golden factory)")
    golden.add_argument("--dir", default="reference_outputs", help="default: reference_outputs")
    golden.add_argument("--update", action="store_true", help="rewrite existing golden files")
    golden.set_defaults(run=_golden)
    diff = verbs.add_parser("diff", help="compare two canonical checkpoints tensor by tensor; "
                                         "exit status 1 when they differ")
    diff.add_argument("a", metavar="A")
    diff.add_argument("b", metavar="B")
    diff.set_defaults(run=_diff)
    trace = verbs.add_parser(
        "trace", help="find where a registered pair's two sides diverge; exit status 0 when "
                      "nothing is found, 1 when an audit or the trace finds something, 2 when "
                      "the diagnosis fails (one [parity] line)",
        description="Load the pair from its checkpoint (--checkpoint, else the pair's own for "
                    "--seed), run both sides on one input, audit the weights and the settings "
                    "of every aligned module and trace every module's activations: the first "
                    "divergent module is the innermost that fails on identical inputs.")
    trace.add_argument("arch", metavar="ARCH", help="a registered architecture")
    trace.add_argument("--checkpoint", metavar="FILE", help="a canonical .h5 checkpoint")
    trace.add_argument("--input", choices=("photo", "random"), default="random",
                       help="matplotlib's photo, preprocessed the pair's way, or a seeded "
                            "example of the pair's declared inputs (default)")
    trace.add_argument("--dtype", choices=("float32", "bfloat16", "float16", "float64"),
                       default="float32", help="default: float32")
    trace.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="default: cpu")
    trace.add_argument("--seed", type=int, default=0, help="default: 0")
    trace.set_defaults(run=_trace)
    cache = verbs.add_parser(
        "cache", help="list the plugin's caches on disk with their sizes, or clear them",
        description="List each cache the plugin keeps (seeded checkpoints and jax's "
                    "compilation cache in the project's .pytest_cache, the temporary "
                    "directory's checkpoints, parity golden's), what it holds and its size; "
                    "--clear removes them, only those directories.")
    cache.add_argument("--clear", nargs="?", const=_ALL, metavar="NAME",
                       help="remove every cache, or the one named: checkpoints, xla, "
                            "tmp-checkpoints or golden")
    cache.add_argument("--rootdir", metavar="DIR",
                       help="the project whose .pytest_cache is meant (default: the nearest "
                            "directory at or above the current one with a pytest config file)")
    cache.set_defaults(run=_cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:

    arguments = build_parser().parse_args(argv)
    try:
        return int(arguments.run(arguments))
    except ParityError as error:
        print(error, file=sys.stderr)
        return 2
    except OSError as error:  # the disk's word (full, read-only, permissions): no traceback
        where = f"{error.filename}: " if error.filename else ""
        print(f"{PREFIX} {where}{error.strerror or error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
