"""Where `make test`'s time goes: the summary at the end of a run lists each part (a test file, or a
notebook under nbval) with its seconds, slowest first, so the README's timing table is copied from a run
and a part that slows down shows up by name. Setup and teardown count, because a module-scoped fixture
(a trained tokenizer, the embedded model server) is part of what that file costs."""

from __future__ import annotations

from collections import defaultdict

_seconds: dict[str, float] = defaultdict(float)
_tests: dict[str, set[str]] = defaultdict(set)


def pytest_runtest_logreport(report):
    part = report.nodeid.split("::", 1)[0]
    _seconds[part] += report.duration
    _tests[part].add(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if not _seconds:
        return
    total = sum(_seconds.values())
    terminalreporter.section("time per part")
    for part, seconds in sorted(_seconds.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {100 * seconds / total:5.1f}%  "
                                    f"{len(_tests[part]):4d} tests  {part}")
    terminalreporter.write_line(f"{total:8.1f} s  100.0%  {sum(map(len, _tests.values())):4d} tests  all parts")
