"""tests/threads.py: a thread a test leaves running fails that test's
teardown; a module fixture's threads may live until the module ends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LEAKY = textwrap.dedent(
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import pytest

    STOP = threading.Event()
    POOL = ThreadPoolExecutor(1)


    @pytest.fixture(scope="module")
    def server():
        t = threading.Thread(target=STOP.wait, name="module-server", daemon=True)
        t.start()
        yield t
        STOP.set()
        t.join()


    def test_uses_the_module_server(server):
        assert server.is_alive()


    def test_leaves_a_thread():
        threading.Thread(target=threading.Event().wait, args=(60,), name="left-behind", daemon=True).start()


    def test_joins_its_thread():
        t = threading.Thread(target=lambda: None, name="joined")
        t.start()
        t.join()


    def test_an_idle_executor_worker_is_exempt(server):
        assert POOL.submit(lambda: 1).result() == 1
    """
)


@pytest.mark.timeout_s(120)
def test_a_thread_left_running_fails_its_test_and_a_module_fixtures_may_live_to_the_module_end(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.threads", "-q", "--rootdir", str(tmp_path), "test_leaky.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "4 passed, 1 error" in out.stdout, text
    assert "ERROR test_leaky.py::test_leaves_a_thread" in out.stdout, text
    assert "thread 'left-behind'" in text and "started in the test of test_leaky.py::test_leaves_a_thread" in text
    assert "module-server" not in text, text
