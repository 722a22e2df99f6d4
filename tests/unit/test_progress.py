"""Long steps say what they did and how long it took, on the terminal, past pytest's capture."""

from pytest_parity import progress


def test_a_long_step_is_announced_and_a_short_one_is_not():
    lines = []
    progress.send_to(lines.append)
    try:
        with progress.timed("resnet50: checkpoint generated", long_s=0.0):
            pass
        with progress.timed("a quick step", long_s=60.0):
            pass
    finally:
        progress.send_to(progress.to_stderr)
    assert len(lines) == 1
    assert lines[0].startswith("[parity] resnet50: checkpoint generated (") and \
        lines[0].endswith(" s)")


def test_under_pytest_the_line_reaches_the_terminal_despite_capture(pytester):
    pytester.makepyfile("""
        from pytest_parity import progress

        def test_slow_step():
            with progress.timed("vit_b_16: first Flax call, compiled", long_s=0.0):
                print("captured, not shown")
    """)
    result = pytester.runpytest_subprocess("-q", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*[[]parity] vit_b_16: first Flax call, compiled (*s)*"])
    assert "captured, not shown" not in result.stdout.str()
