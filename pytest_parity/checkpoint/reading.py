"""An untrusted canonical file's structure, each attribute, link and dataset checked before data.

Also the probe process of probe.py (`python -I reading.py --probe`): so it imports nothing of
the package, only h5py and the standard library.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import h5py

FORMAT_NAME = "pytest-parity-checkpoint"
FORMAT_VERSION = 1
SUPPORTED_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "float16", "bfloat16",
                    "float32", "float64"}
STORED_AS = {"bfloat16": "uint16"}  # HDF5 has no bfloat16: its raw bits are stored
# What h5py raises on damaged metadata (measured by fuzzing: OSError, RuntimeError, KeyError,
# ValueError and its UnicodeDecodeError, TypeError); RecursionError is a RuntimeError.
HDF5_FAILURES = (OSError, RuntimeError, KeyError, ValueError, TypeError)
_STRINGS = ("format", "architecture", "source", "written_by", "tensors", "digest")
_READ_LAYOUTS = (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT, h5py.h5d.CHUNKED)
_DECODED = {h5py.h5z.FILTER_DEFLATE: "gzip", h5py.h5z.FILTER_SHUFFLE: "shuffle",  # lossless
            h5py.h5z.FILTER_FLETCHER32: "fletcher32", 32000: "lzf"}  # lzf: h5py's own
_LINK_NAMES = {h5py.h5l.TYPE_SOFT: "a soft link", h5py.h5l.TYPE_EXTERNAL: "an external link"}
_OBJECT_NAMES = {h5py.h5o.TYPE_GROUP: "a group", h5py.h5o.TYPE_DATASET: "a dataset",
                 h5py.h5o.TYPE_NAMED_DATATYPE: "a named datatype"}
Result = TypeVar("Result")


@dataclass
class Structure:
    """What the root attributes say, and the declared datasets, checked but not yet read."""

    architecture: str = ""
    source: str = ""
    written_by: dict[str, str] = field(default_factory=dict)
    digest: str = ""
    manifest: dict[str, dict[str, str]] = field(default_factory=dict)
    datasets: dict[str, h5py.h5d.DatasetID] = field(default_factory=dict)


def attempt(problems: list[str], where: str, call: Callable[[], Result]) -> Result | None:
    """call(), or None with a problem naming `where` when the HDF5 layer fails."""
    try:
        return call()
    except HDF5_FAILURES as error:
        problems.append(f"{where}: cannot be read ({type(error).__name__}: {error})")
        return None


def _root_attribute(h5: h5py.File, name: str, problems: list[str]) -> Any:
    """A root attribute's value once its type and shape are known to be a string or integer
    scalar (so that no array, reference or compound is ever read); None if absent or bad."""
    if name not in h5.attrs:
        return None
    info = h5.attrs.get_id(name)
    want_string = name in _STRINGS
    if info.shape != () or (h5py.check_string_dtype(info.dtype) is None if want_string
                            else info.dtype.kind not in "iu"):
        problems.append(f"root attribute {name!r}: {info.dtype} of shape {info.shape} where a "
                        f"single {'string' if want_string else 'integer'} was expected")
        return None
    value = h5.attrs[name]
    if want_string and not (isinstance(value, str) and _is_utf8(value)):
        problems.append(f"root attribute {name!r}: {type(value).__name__} {str(value)[:40]!r}"
                        " where a UTF-8 string was expected")
        return None
    return value if want_string else int(value)


def _is_utf8(text: str) -> bool:
    """h5py decodes invalid UTF-8 to surrogates, which printing the text would fail on."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _json_attribute(text: str | None, name: str, check: Callable[[Any], bool], meaning: str,
                    problems: list[str]) -> Any:
    try:
        value = json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        value = None
    if value is None or not check(value):
        problems.append(f"the root attribute {name!r} ({meaning}) is missing or not a JSON "
                        "object of that")
        return None
    return value


def _manifest_problems(manifest: dict[str, Any]) -> list[str]:
    problems = []
    for key, entry in sorted(manifest.items()):
        if not isinstance(entry, dict) or not all(
                isinstance(entry.get(part), str) for part in ("layout", "dtype")):
            problems.append(f"{key}: its manifest entry {str(entry)[:80]} is not "
                            '{"layout": "...", "dtype": "..."}')
        elif entry["dtype"] not in SUPPORTED_DTYPES:
            problems.append(f"{key}: declared dtype {entry['dtype']!r} is not one of "
                            f"{sorted(SUPPORTED_DTYPES)}")
    return problems


def _read_header(h5: h5py.File, architecture: str | None, problems: list[str]) -> Structure:
    values: dict[str, Any] = {}
    unread = set()  # an attribute that could not be read is named once, not twice
    for name in ("format", "format_version", *_STRINGS[1:]):
        count = len(problems)
        values[name] = attempt(problems, f"root attribute {name!r}",
                               partial(_root_attribute, h5, name, problems))
        if len(problems) > count:
            unread.add(name)
    if values["format"] != FORMAT_NAME:  # nothing else is worth saying
        problems[:] = [f"not a {FORMAT_NAME} file (root attribute format={values['format']!r})",
                       *(problems[:1] if "format" in unread else [])]
        return Structure()
    if values["format_version"] != FORMAT_VERSION and "format_version" not in unread:
        problems.append(f"format version {values['format_version']!r} is not supported; "
                        f"this pytest-parity reads version {FORMAT_VERSION}")
    name = values["architecture"] or ""
    if "architecture" not in unread and (not name or "/" in name):
        problems.append(f"root attribute 'architecture' {name!r} is not a group's name")
    elif architecture is not None and name != architecture:
        problems.append(f"architecture {name!r} where {architecture!r} was expected")
    written_by = None if "written_by" in unread else _json_attribute(
        values["written_by"], "written_by", lambda value: isinstance(value, dict) and all(
            isinstance(v, str) for v in value.values()),
        "the versions of the libraries that wrote it", problems)
    manifest = None if "tensors" in unread else _json_attribute(
        values["tensors"], "tensors", lambda value: isinstance(value, dict),
        "each tensor's layout and dtype", problems)
    problems.extend(_manifest_problems(manifest or {}))
    return Structure(name, values["source"] or "", written_by or {}, values["digest"] or "",
                     manifest or {})


def _objects(h5: h5py.File) -> dict[str, Any]:
    """Each path -> the kind of what is there (h5o.TYPE_*, or what the writer never makes);
    one C walk each for objects and links (h5py's Group per item costs ~50 us each)."""
    kinds: dict[str, Any] = {}
    hard_links: list[str] = []

    def object_seen(name: bytes, info: Any) -> None:  # each object once: a cycle ends
        kinds[name.decode()] = info.type

    def link_seen(name: bytes, info: Any) -> None:
        if info.type == h5py.h5l.TYPE_HARD:
            hard_links.append(name.decode())
        else:
            link = h5.get(name.decode(), getlink=True)
            where = ":".join(str(getattr(link, part)) for part in ("filename", "path")
                             if hasattr(link, part))
            kinds[name.decode()] = f"{_LINK_NAMES.get(info.type, 'a user-defined link')} " \
                                   f"to {where!r}"

    h5py.h5o.visit(h5.id, object_seen, info=True)
    h5.id.links.visit(link_seen, info=True)
    kinds.update((path, "a second hard link to an object the file holds elsewhere")
                 for path in hard_links if path not in kinds)
    kinds.pop(".", None)
    return kinds


def _kind_name(kind: Any) -> str:
    return kind if isinstance(kind, str) else _OBJECT_NAMES.get(kind, "an unknown object")


def _dataset_problem(key: str, dataset: h5py.h5d.DatasetID, dtype_name: str, file_size: int
                     ) -> str | None:
    """Why the dataset cannot hold the declared tensor, found without reading its data."""
    dtype, space = dataset.dtype, dataset.get_space()
    if dtype != STORED_AS.get(dtype_name, dtype_name):  # a string, reference, compound...
        return f"{key}: declared {dtype_name} but stored as {dtype}"
    if space.get_simple_extent_type() == h5py.h5s.NULL:
        return f"{key}: an empty dataset (no dataspace), not a tensor"
    n_bytes = dtype.itemsize * math.prod(space.shape)
    offset = dataset.get_offset()  # only contiguous data in this file has one
    plist: Any = dataset.get_create_plist() if offset is None else None  # ~20 us: rare layouts
    layout = h5py.h5d.CONTIGUOUS if plist is None else plist.get_layout()
    room = file_size if layout != h5py.h5d.CHUNKED else dataset.get_storage_size() * (
        1032 if plist.get_nfilters() else 1)  # a compressed copy: deflate's ratio at most
    if n_bytes > room:  # checked before anything is allocated
        return f"{key}: shape {space.shape} of {dtype} ({n_bytes:,} bytes) does not fit in " \
               f"the file ({file_size:,} bytes)"
    if offset is not None:
        return None if offset + n_bytes <= file_size else \
            f"{key}: its {n_bytes:,} bytes at offset {offset} lie beyond the end of the " \
            f"file ({file_size:,} bytes)"
    if plist.get_external_count() or layout not in _READ_LAYOUTS:
        where = "in external files" if plist.get_external_count() else "in virtual storage"
        return f"{key}: stored {where}, which the writer never does (refused unread)"
    unread = [(code, name.decode(errors="replace") or "unnamed") for code, _, _, name in map(
        plist.get_filter, range(plist.get_nfilters())) if code not in _DECODED
        or not h5py.h5z.filter_avail(code)]  # only a chunked dataset has filters
    if unread:
        return f"{key}: compressed with HDF5 filter {unread[0][0]} ({unread[0][1]}), which is " \
               f"not read (only {', '.join(_DECODED.values())} are; refused unread)"
    if layout == h5py.h5d.CONTIGUOUS and n_bytes:
        return f"{key}: its {n_bytes:,} bytes were never written (no storage in the file)"
    return None


def read_structure(h5: h5py.File, file_size: int, architecture: str | None = None
                   ) -> tuple[Structure, list[str]]:
    """The root attributes, the manifest and the declared datasets, with every problem found;
    no tensor's data is read."""
    problems: list[str] = []
    structure = _read_header(h5, architecture, problems)
    if problems and problems[0].startswith(f"not a {FORMAT_NAME}"):
        return structure, problems
    name = structure.architecture
    links = attempt(problems, "the root group", lambda: list(h5))
    if links is not None and links != [name]:
        problems.append(f"the root must hold one group named {name!r}, found {links}")
    if problems:
        return structure, problems
    kinds = attempt(problems, name, lambda: _objects(h5)) or {}
    if kinds.get(name) != h5py.h5o.TYPE_GROUP:
        problems.append(f"{name}: the architecture's group is "
                        f"{_kind_name(kinds.get(name, 'unreadable'))}")
    if problems:
        return structure, problems
    tensors = {path[len(name) + 1:]: kind for path, kind in kinds.items()
               if path.startswith(f"{name}/")}
    for key, entry in sorted(structure.manifest.items()):
        kind = tensors.get(key)
        if kind is None:
            problems.append(f"{key}: declared in the root manifest but not in the file")
        elif kind != h5py.h5o.TYPE_DATASET:
            problems.append(f"{key}: declared as a tensor, but the file holds "
                            f"{_kind_name(kind)} there (the writer makes only datasets)")
        else:
            dataset = attempt(problems, key, partial(h5py.h5d.open, h5.id,
                                                     f"{name}/{key}".encode()))
            problem = dataset and attempt(problems, key, partial(
                _dataset_problem, key, dataset, entry["dtype"], file_size))
            if problem:
                problems.append(problem)
            if dataset:
                structure.datasets[key] = dataset
    problems.extend(f"{key}: " + ("a tensor that the root manifest does not declare"
                                  if kind == h5py.h5o.TYPE_DATASET else
                                  f"{_kind_name(kind)}, which the writer never makes")
                    for key, kind in sorted(tensors.items())
                    if key not in structure.manifest and kind != h5py.h5o.TYPE_GROUP)
    return structure, problems


def check_file(path: str, architecture: str | None = None) -> list[str]:
    """Every problem of the file's structure (what the probe process answers)."""
    problems: list[str] = []
    try:
        with h5py.File(path, "r") as h5:
            problems = read_structure(h5, os.fstat(h5.id.get_vfd_handle()).st_size,
                                      architecture)[1]
    except HDF5_FAILURES as error:
        problems.append(f"not a readable HDF5 file ({type(error).__name__}: {error})")
    return problems


def _serve() -> None:
    """Answer one JSON line per request line {"path", "architecture", "seconds"}, under a
    memory limit; a request that outlives its seconds ends the process (SIGALRM's default)."""
    import signal

    # A damaged string length makes HDF5 allocate up to 4 GiB (measured: 7.5 s, 4.2 GB);
    # a canonical file's metadata is ~1 MiB at most. Linux only (/proc), where it matters most.
    if os.path.exists("/proc/self/statm"):
        import resource

        with open("/proc/self/statm") as statm:
            in_use = int(statm.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (in_use + 512 * 2**20,
                                                resource.getrlimit(resource.RLIMIT_AS)[1]))
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        alarm = getattr(signal, "alarm", lambda seconds: None)  # POSIX only
        alarm(int(request["seconds"]) + 2)  # if the parent died waiting
        try:
            problems = check_file(request["path"], request["architecture"])
        except MemoryError:
            problems = ["the file's structure asks for more memory than any canonical file "
                        "needs: a size field is damaged"]
        alarm(0)
        print(json.dumps(problems), flush=True)


if __name__ == "__main__" and sys.argv[1:] == ["--probe"]:
    _serve()
