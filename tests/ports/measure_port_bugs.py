"""The table behind tests/ports/test_third_party_bugs_localized.py: every bug of
tests/ports/port_bugs.py in float32 and bfloat16 (detected at what margin, the culprit
named, the audit findings, localized or not), the totals, and what the diagnosis says of
each correct pair.

    python tests/ports/measure_port_bugs.py [BUG ...]
"""

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _row(cells, widths):
    return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True))


def _table(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return [_row(row, widths).rstrip() for row in rows]


def main(names):
    from pytest_parity.torchvision_compat import import_torchvision
    from tests.ports.port_bugs import BUGS, DTYPES, PORTS, forward_findings, measured

    import_torchvision()
    ports, started = {}, time.perf_counter()

    def port(name, dtype):
        if (name, dtype) not in ports:
            ports[name, dtype] = PORTS[name](dtype)
        return ports[name, dtype]

    rows = [("bug", "dtype", "detected (margin)", "culprit", "audit findings", "localized")]
    counted = {dtype: [0, 0] for dtype in DTYPES}
    for bug in (BUGS[name] for name in names or BUGS):
        for dtype in DTYPES:
            found = measured(bug, port(bug.pair, dtype), dtype)
            findings = "; ".join(line[:110] for line in found.findings[:2])
            more = len(found.findings) - 2
            visible = dtype not in bug.invisible
            verdict = ("yes" if found.localized else "no") if visible else \
                "(not detectable)"
            rows.append((bug.name, dtype, f"{'yes' if found.detected else 'no'} "
                         f"({found.margin:.3g})", found.culprit if found.culprit is not None
                         else "none", findings + (f"; +{more}" if more > 0 else "") or "-",
                         verdict))
            if visible:
                counted[dtype][0] += found.localized
                counted[dtype][1] += 1
    print("\n".join(_table(rows)))
    localized = sum(n for n, _ in counted.values())
    cases = sum(total for _, total in counted.values())
    print("\nlocalized: " + ", ".join(f"{dtype} {n}/{total}" for dtype, (n, total)
                                      in counted.items())
          + f"; all {localized}/{cases} ({100 * localized / max(cases, 1):.0f}%)")

    rows = [("correct pair", "dtype", "culprit", "weight findings", "forward settings",
             "training-only settings")]
    for name in PORTS if not names else []:
        for dtype in DTYPES:
            loaded = port(name, dtype)
            diagnosis = loaded.loaded.diagnose(loaded.inputs, descend=True,
                                               every_module_alone=True)
            culprit = diagnosis.trace.culprit
            forward = forward_findings(diagnosis)
            rows.append((name, dtype, "none" if culprit is None else culprit.pair.torch or
                         "(root)", len(diagnosis.weights), len(forward),
                         len(diagnosis.settings) - len(forward)))
    if len(rows) > 1:
        print()
        print("\n".join(_table(rows)))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    main(sys.argv[1:])
