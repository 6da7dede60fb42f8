"""The OpenTelemetry Collector, built from its own modules for the tests.

The Collector's builder (``go.opentelemetry.io/collector/cmd/builder``, at
the release of :file:`builder.yaml`) is installed with ``go install`` into
``.collector/bin`` of the checkout, then builds the distribution
:file:`builder.yaml` names into ``.collector/<digest>/``: a build made
from the same file is reused, on this checkout and by a later run. One
distribution runs every shipped config, the single node's and the
gateway's (:file:`builder.yaml` says why one, and why that release).

Go's module and build caches are Go's own (``~/go``, ``~/.cache/go-build``),
so a second checkout on the same machine builds in seconds; a machine that
has neither (a fresh CI runner) downloads the modules and compiles for some
minutes. One build at a time (a lock per checkout); the module proxy is the
only network it needs, and a build that cannot fetch a module says which.

``make test`` runs this in the background while lint and the type check
run; the Collector tests wait on the lock and use what it built, or try
again and say why it failed (a failure under ``CI=true``, a skip elsewhere).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
CONFIG = HERE / "builder.yaml"
OUT = ROOT / ".collector"
# The builder's release is the distribution's (dist.version of builder.yaml).
BUILDER = "go.opentelemetry.io/collector/cmd/builder@v0.159.0"
GOBIN = OUT / "bin"
NAME = "spanvisor-otelcol"  # dist.name of builder.yaml
BUILD_TIMEOUT_S = 900.0
INSTALL = "Go 1.25 or newer with the Go module proxy (the machine's /usr/local/go)"


def missing(what: str, install: str | None = None) -> NoReturn:
    """tests.conftest's, imported when it is needed: the build itself needs
    only the standard library and Go, so .ci/run starts it before the venv
    exists (outside pytest what this raises is printed, and the tests try
    again)."""
    from tests.conftest import missing as said

    said(what, install)


def _go() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if found is None:
        missing("go", INSTALL)
    return found


def binary() -> Path:
    digest = hashlib.sha256(CONFIG.read_bytes()).hexdigest()[:16]
    return OUT / digest / "dist" / NAME


def _run(argv: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        missing(f"the OpenTelemetry Collector ({what} did not finish in {BUILD_TIMEOUT_S:.0f} s)")
    if done.returncode != 0:
        said = (done.stderr or done.stdout)[-3000:]
        missing(f"the OpenTelemetry Collector ({what} exited {done.returncode}: {said})")


def build() -> Path:
    """The Collector's executable, built when it is not yet."""
    out = binary()
    # The executable is there before it is whole (Go writes it in place while
    # another process builds under the lock): only a build that finished
    # leaves this mark beside it.
    built = out.with_name(out.name + ".built")
    if built.exists() and os.access(out, os.X_OK):
        return out
    go = _go()
    OUT.mkdir(exist_ok=True)
    with (OUT / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if built.exists() and os.access(out, os.X_OK):
            return out
        env = {**os.environ, "GOBIN": str(GOBIN), "GOFLAGS": "-mod=mod"}
        env["PATH"] = str(Path(go).parent) + os.pathsep + env.get("PATH", os.defpath)
        _run([go, "install", BUILDER], ROOT, env, "go install of the builder")
        work = out.parents[1]
        work.mkdir(exist_ok=True)
        shutil.copyfile(CONFIG, work / "builder.yaml")
        _run([str(GOBIN / "builder"), "--config", "builder.yaml"], work, env, "the builder")
        built.touch()
    return out


def as_otelcol_contrib(folder: Path) -> Path:
    """``folder``, holding ``otelcol-contrib``: the Collector built here (built
    now if it is not yet), under the name the docs give the official contrib
    distribution, which runs the same configs (every component of
    :file:`builder.yaml` is in it, at the same release). For a docs page's
    blocks to run as printed: put ``folder`` first on their PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "otelcol-contrib"
    if not link.exists():
        link.symlink_to(build())
    return folder


if __name__ == "__main__":
    try:
        print(f"OpenTelemetry Collector: ready at {build()}", flush=True)
    except BaseException as exc:  # pytest's skip and fail outside pytest
        print(f"OpenTelemetry Collector: not built here ({exc}); the tests try again", flush=True)
