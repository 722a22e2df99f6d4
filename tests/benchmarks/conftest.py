"""Prints, after the benchmarks: each conversion's time as a ratio to its baseline measured
in the same run (minimums, the least noisy, and medians), `@parity_test`'s examples per second,
and the figures the process benchmarks keep in extra_info (memory, compile times). Gates on
these ratios: pyproject.toml's [tool.parity] gates, enforced by --parity-bench-gate.
"""

import re

# (step, timed benchmark, baseline benchmark, target ratio)
RATIOS = [
    ("torch -> .h5", "test_torch_to_h5", "test_raw_h5py_write", 1.2),
    (".h5 -> Flax", "test_h5_to_flax", "test_raw_h5py_read", 1.2),
    (".h5 -> Flax, no digest", "test_h5_to_flax_digest_unverified", "test_raw_h5py_read", 1.2),
    ("torch -> Flax in memory", "test_torch_to_flax_in_memory", "test_plain_copy", 2.0),
]


def _conversion_and_throughput(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled or not session.benchmarks:
        return
    stats = {bench.name: bench.stats for bench in session.benchmarks if not bench.has_error}
    params = sorted({match.group(1) for name in stats
                     if (match := re.search(r"\[(.+)\]$", name))})
    lines = []
    for param in params:
        for step, timed, baseline, target in RATIOS:
            a, b = stats.get(f"{timed}[{param}]"), stats.get(f"{baseline}[{param}]")
            if a is None or b is None:
                continue
            lines.append(f"{param:10s} {step:24s} {a.min / b.min:6.2f}x {a.median / b.median:6.2f}x"
                         f"   target <= {target}x   ({a.min * 1e3:.0f} ms vs {b.min * 1e3:.0f} ms)")
    if lines:
        terminalreporter.section("parity conversion ratios (min, median)")
        for line in lines:
            terminalreporter.write_line(line)
    throughput = [f"{name.partition('[')[2].rstrip(']'):12s} "
                  f"{bench.extra_info['examples'] / bench.stats.mean:6.1f} examples/s   "
                  f"{bench.extra_info['compilations']} compilations   target >= 20 with buckets"
                  for name, bench in ((b.name, b) for b in session.benchmarks)
                  if name.startswith("test_parity_test_examples") and not bench.has_error]
    if throughput:
        terminalreporter.section("@parity_test examples per second (Conv2d, mean of 5 runs)")
        for line in throughput:
            terminalreporter.write_line(line)


def pytest_terminal_summary(terminalreporter, config):
    _conversion_and_throughput(terminalreporter, config)
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled:
        return
    figures = [(bench.name, key, value) for bench in session.benchmarks if not bench.has_error
               for key, value in bench.extra_info.items() if isinstance(value, float)]
    if figures:
        terminalreporter.section("process costs (extra_info)")
        for name, key, value in figures:
            terminalreporter.write_line(f"{name:44s} {key:22s} {value:10.3f}")
