"""``serve`` sets its own process's garbage collector, and only its own.

At start it raises the young generation's threshold (``SPANVISOR_GC_YOUNG``)
and, once ready, freezes what it holds; ``off`` leaves Python's collector
as it is. The calls run in child processes: the test process's collector
is pytest's, not ours to change.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from serve_proc import ServeProcess, console_env
from tests.waiting import wait_until

from spanvisor.config import Config, ConfigError
from spanvisor.receiver.heap import DEFAULT_YOUNG, p_young


def test_the_setting_reads_a_count_or_off() -> None:
    assert p_young("50000") == p_young("50_000") == 50_000
    assert p_young("off") == p_young("OFF") == p_young("python") == 0
    for bad in ("99", "-1", "lots", "1.5"):
        with pytest.raises(ValueError):
            p_young(bad)
    assert Config.load(env={})["gc_young"] == DEFAULT_YOUNG
    with pytest.raises(ConfigError, match="SPANVISOR_GC_YOUNG"):
        Config.load(env={"SPANVISOR_GC_YOUNG": "12"})


_CHILD = """
import gc, json, sys
from spanvisor.config import Config
from spanvisor.receiver import heap
before = gc.get_threshold()
tuned = heap.tune(Config.load(env={"SPANVISOR_GC_YOUNG": sys.argv[1]}))
if tuned:
    heap.freeze()
print(json.dumps({"before": before, "after": gc.get_threshold(), "tuned": tuned, "frozen": gc.get_freeze_count()}))
"""


def _child(value: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", _CHILD, value], capture_output=True, text=True, timeout=60, check=True)
    return dict(json.loads(out.stdout))


def test_tune_sets_the_young_threshold_and_freeze_keeps_the_heap_out_of_collections() -> None:
    r = _child("60000")
    before, after = r["before"], r["after"]
    assert isinstance(before, list) and isinstance(after, list)
    assert r["tuned"] is True
    assert after == [60_000, *before[1:]]  # the older generations' thresholds are Python's
    assert isinstance(r["frozen"], int) and r["frozen"] > 1_000  # the modules, at least


def test_off_leaves_pythons_collector_as_it_is() -> None:
    r = _child("off")
    assert r["tuned"] is False
    assert r["after"] == r["before"]
    assert r["frozen"] == 0


def _ready(serve: ServeProcess) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{serve.admin}/readyz", timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.mark.parametrize("young", ["default", "off"])
def test_serve_freezes_its_heap_once_ready_unless_off(tmp_path: Path, young: str) -> None:
    extra = {"SPANVISOR_LOG_LEVEL": "debug"} | ({} if young == "default" else {"SPANVISOR_GC_YOUNG": young})
    serve = ServeProcess(tmp_path, console_env(tmp_path / "data", **extra))
    try:
        wait_until(lambda: _ready(serve), 60, "serve ready")
        said = f"young threshold {DEFAULT_YOUNG},"
        if young == "default":
            wait_until(lambda: said in serve.log_text(), 30, "the freeze said in the log")
        else:
            # Ready already; the freeze would follow within its 0.25 s poll.
            assert serve.terminate() == 0
            assert "objects frozen at ready" not in serve.log_text()
    finally:
        serve.stop()
