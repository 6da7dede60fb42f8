"""The test harness itself: the per-test deadline, the session's budget and ``require``.

A hang must fail its test (with every thread's stack) instead of holding CI
until its limit; a run past its budget must end with its report; a missing
tool must fail under CI instead of skipping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests import budget, deadline, schedule
from tests.conftest import in_ci, missing, require

ROOT = Path(__file__).resolve().parents[1]

HANGING = textwrap.dedent(
    """
    import asyncio
    import threading

    import pytest


    @pytest.mark.timeout_s(2)
    def test_hangs_on_an_event():
        # A second thread, stuck too: its stack must be in the report.
        threading.Thread(target=threading.Event().wait, name="stuck-helper", daemon=True).start()
        threading.Event().wait()


    @pytest.mark.timeout_s(2)
    def test_hangs_in_an_event_loop():
        async def forever():
            await asyncio.Event().wait()

        asyncio.run(forever())


    @pytest.mark.timeout_s(1)
    def test_quick():
        pass


    def test_after_a_quick_one_is_not_cut_short():
        # test_quick's 1 s timer was cancelled at its teardown: waiting
        # past it here must not fail this test.
        threading.Event().wait(1.5)
    """
)


def _run_pytest(tmp_path: Path, test_file: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_hangs.py").write_text(test_file)
    # Only the deadline plugin, and an ini of its own with --strict-markers:
    # the plugin must register its marker itself.
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers -p no:cacheprovider\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.deadline", "-q", "--rootdir", str(tmp_path), "test_hangs.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,  # the plugin under test ends each hang after 2 s; this only bounds a broken plugin
        check=False,
    )


@pytest.mark.timeout_s(240)
def test_a_hanging_test_fails_with_stacks_and_the_next_tests_run(tmp_path: Path) -> None:
    out = _run_pytest(tmp_path, HANGING)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "2 failed, 2 passed" in out.stdout, text
    for name in ("test_hangs_on_an_event", "test_hangs_in_an_event_loop"):
        assert f"FAILED test_hangs.py::{name}" in out.stdout, text
        assert f"Timeout: test_hangs.py::{name} ran longer than its deadline of 2 s" in text
    assert "Timeout: test_hangs.py::test_quick" not in text and "Timeout: test_hangs.py::test_after" not in text
    # The report carries every thread's stack, down to where each test hung.
    assert "Stacks of all threads" in text
    assert "Current thread 0x" in text and "\nE       Thread 0x" in text  # the helper thread too
    assert "line 12 in test_hangs_on_an_event" in text  # the line it hung on
    assert "in run_until_complete" in text  # the event loop, waiting in select()


SLOW_PROPERTY = textwrap.dedent(
    """
    import time

    from hypothesis import given, settings, strategies as st
    import pytest


    @pytest.mark.timeout_s(1)
    @settings(max_examples=1000, deadline=None, database=None)
    @given(st.integers())
    def test_slow_examples(n):
        time.sleep(0.2)
    """
)


@pytest.mark.timeout_s(120)
def test_a_property_test_past_its_deadline_fails_at_once(tmp_path: Path) -> None:
    # Hypothesis takes pytest.fail for a failing example and goes on
    # shrinking and replaying it: past the deadline, until the backstop
    # ended the whole process.
    (tmp_path / "test_slow_property.py").write_text(SLOW_PROPERTY)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers -p no:cacheprovider\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_DEADLINE_GRACE_S": "20"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.deadline", "-q", "--rootdir", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 1 and "1 failed" in out.stdout, text
    assert "ran longer than its deadline of 1 s" in text, text
    assert "DeadlineExceeded" in text and "Timeout (0:00:20)!" not in text, text  # not the backstop
    assert "Falsifying example" not in text, text  # no shrinking


UNENDING = textwrap.dedent(
    """
    import subprocess
    import sys
    import time

    import pytest


    @pytest.mark.timeout_s(1)
    def test_swallows_its_timeout(tmp_path_factory):
        child = subprocess.Popen(["sleep", "300"])
        open(sys.argv[-1] + ".pid", "w").write(str(child.pid))
        while True:  # a test that never unwinds: only the backstop ends it
            try:
                time.sleep(60)
            except BaseException:
                pass
    """
)


@pytest.mark.timeout_s(120)
def test_the_backstop_kills_what_a_hung_test_started(tmp_path: Path) -> None:
    (tmp_path / "test_unending.py").write_text(UNENDING)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers -p no:cacheprovider\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_DEADLINE_GRACE_S": "4"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.deadline", "-q", "--rootdir", str(tmp_path), "test_unending.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    pid = int((tmp_path / "test_unending.py.pid").read_text())
    assert f"test_unending.py::test_swallows_its_timeout: killed its processes {pid}" in text, text
    assert "deadline of 1 s passed" in text, text
    with pytest.raises(ProcessLookupError):  # killed, and reaped by init once its parent ended
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)


BUDGETED = textwrap.dedent(
    """
    import time


    def test_fails():
        assert False


    def test_spends_the_budget():
        time.sleep(1.5)


    def test_not_run_a():
        pass


    def test_not_run_b():
        pass
    """
)


@pytest.mark.timeout_s(240)
@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["one-process", "xdist"])
def test_a_run_past_its_budget_ends_with_its_report(tmp_path: Path, workers: list[str]) -> None:
    (tmp_path / "test_budgeted.py").write_text(BUDGETED)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers -p no:cacheprovider\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_BUDGET_S": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.budget", "-q", "--rootdir", str(tmp_path), *workers],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 2, text  # interrupted: red
    # The failure is named when it happens, before the summary.
    named = text.index("\nFAILED test_budgeted.py::test_fails (call, ")
    assert named < text.index("short test summary info"), text
    assert "spent the session's budget of 1 s (TEST_BUDGET_S)" in text, text
    assert "test_not_run_b" not in text and " 2 passed" not in text, text


def test_a_budget_that_is_not_a_number_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BUDGET_S", "an hour")
    with pytest.raises(pytest.UsageError, match="TEST_BUDGET_S must be a number"):
        budget.budget_s()
    monkeypatch.setenv("TEST_BUDGET_S", "0")
    assert budget.budget_s() is None


def test_the_deadline_is_armed_during_a_test() -> None:
    remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    assert 0 < remaining <= deadline.DEFAULT_DEADLINE_S
    assert signal.getsignal(signal.SIGALRM) is deadline._expired


@pytest.mark.timeout_s(42)
def test_the_marker_sets_the_deadline(request: pytest.FixtureRequest) -> None:
    assert deadline.deadline_for(request.node) == 42.0
    remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    assert 0 < remaining <= 42.0


def test_off_the_main_thread_arming_does_nothing() -> None:
    before = signal.getitimer(signal.ITIMER_REAL)[0]
    results: list[bool] = []
    worker = threading.Thread(target=lambda: results.append(deadline.arm("elsewhere", 0.01)))
    worker.start()
    worker.join(30)
    assert results == [False]
    # This test's own deadline is untouched: same handler, still running.
    assert signal.getsignal(signal.SIGALRM) is deadline._expired
    assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= before


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("Yes", True),
        (" true ", True),
        ("", False),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
    ],
)
def test_any_truthy_ci_counts(value: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_unset_ci_is_not_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert not in_ci()


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_a_missing_tool_fails_under_ci(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"no-such-tool-4f1a is not available.*may not skip"):
        require("no-such-tool-4f1a")


def test_a_missing_tool_skips_elsewhere_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match=r"install: apt-get install prometheus-alertmanager"):
        missing("amtool")


def test_require_finds_a_tool_on_path() -> None:
    path = require("sh")
    assert Path(path).name == "sh" and os.access(path, os.X_OK)


# The schedule (tests/schedule.py): the longest files first, never more CLI
# files at once than the slots, and a slot is exclusive across processes.


def test_the_plan_starts_the_longest_files_first_and_keeps_the_cli_cap() -> None:
    seconds = {
        "tests/codingagents/test_a.py": 300.0,
        "tests/codingagents/test_b.py": 250.0,
        "tests/codingagents/test_c.py": 200.0,
        "tests/core/test_x.py": 100.0,
        "tests/core/test_y.py": 50.0,
    }
    order = schedule.plan(seconds, [*sorted(seconds), "tests/core/test_new.py"], workers=3, slots=2)
    # The third worker takes the longest non-CLI file, since two CLI files run.
    assert order[:3] == ["tests/codingagents/test_a.py", "tests/codingagents/test_b.py", "tests/core/test_x.py"]
    assert sorted(order) == sorted([*seconds, "tests/core/test_new.py"])
    # Only CLI files left: one still goes, and waits for its slot.
    assert schedule.plan(seconds, ["tests/codingagents/test_a.py", "tests/codingagents/test_c.py"], 3, 1) == [
        "tests/codingagents/test_a.py",
        "tests/codingagents/test_c.py",
    ]


def test_a_file_that_starts_seven_clis_runs_beside_no_other_cli_file() -> None:
    whole = "tests/codingagents/test_stop_more.py"
    assert whole in schedule.WHOLE_FILES
    seconds = {whole: 300.0, "tests/codingagents/test_a.py": 250.0, "tests/core/test_x.py": 100.0}
    order = schedule.plan(seconds, sorted(seconds), workers=3, slots=2)
    # The whole file first; the other CLI file only after it (the core file meanwhile).
    assert order == [whole, "tests/core/test_x.py", "tests/codingagents/test_a.py"]
    assert schedule.slots_of(whole, 2) == 2 and schedule.slots_of("tests/codingagents/test_a.py", 2) == 1
    assert schedule.slots_of("tests/core/test_x.py", 2) == 0


def test_a_whole_file_waits_for_every_slot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TEST_CLI_FILES", "2")
    one, whole = schedule._Slot(tmp_path), schedule._Slot(tmp_path)  # flock: per open file, so per holder
    one.take("tests/codingagents/test_a.py")
    taken = threading.Event()
    waiter = threading.Thread(target=lambda: (whole.take("tests/codingagents/test_stop_more.py"), taken.set()))
    waiter.start()
    try:
        assert not taken.wait(1.0), "the whole file started beside another CLI file"
        one.give_back()
        assert taken.wait(30.0), "the whole file never had its slots"
        assert len(whole.handles) == 2
    finally:
        one.give_back()
        waiter.join(30)
        whole.give_back()


def test_a_cli_slot_is_held_by_one_process_at_a_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Slots of their own: the suite's (one folder per checkout) are held by
    # its CLI files while this runs.
    monkeypatch.setenv("TEST_CLI_FILES", "1")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from tests import schedule;"
            f" s = schedule._Slot(Path({str(tmp_path)!r})); s.take('a');"
            " print('held', flush=True); sys.stdin.readline(); s.give_back()",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TEST_CLI_FILES": "1"},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        mine = schedule._Slot(tmp_path)
        taken = threading.Event()

        def wait_for_it() -> None:
            mine.take("b")
            taken.set()

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        assert not taken.wait(1.0), "a second holder took the only slot"
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert taken.wait(30.0), "the slot given back was never taken"
        waiter.join()
        mine.give_back()
    finally:
        holder.kill()
        holder.wait()
