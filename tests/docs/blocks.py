"""Every fenced code block of a page, read and run as a reader would.

A page (README.md, a guide) is a list of fenced blocks, each with the
directives written in HTML comments on the lines right above it (GitHub
shows nothing of them):

``<!-- test: skip WHY -->``
    Not run. The reason is required and says why it cannot run here (a Slack
    workspace, a coding-agent CLI and its model account, a network).
``<!-- test: file NAME -->`` / ``<!-- test: append NAME -->``
    Written to (appended to) ``NAME`` in the page's scratch folder, for a
    later block to use. A python block is compiled, a toml, json or yaml
    block parsed.
``<!-- test: env K=V K2=V2 -->``
    Environment of this block only.
``<!-- test: expect TEXT -->`` (repeatable), ``expect-once``, ``absent``
    Its output (stdout and stderr) contains TEXT; exactly once; never.
``<!-- test: exit N -->``
    Its exit status (default 0).
``<!-- test: until TEXT -->``
    Run again (for up to a minute) until its output contains TEXT: a reader
    who runs a command until what they wait for shows.
``<!-- test: background NAME -->``
    Started and left running (a server); stopped at the page's end.
``<!-- test: concurrent NAME -->``
    Started and left running (an agent waiting for a person); it must end by
    itself, and its exit status and expectations are checked when a block
    says ``after NAME`` or at the page's end.
``<!-- test: paste TEXT -->``
    The block shows the shape of a command the page says to paste from the
    output above; the line of that output holding TEXT (up to a
    ``   (or: …)`` after it) is what runs.
``<!-- test: output -->``
    On a ``text`` block: every line of it is in the output of the block run
    last (whitespace runs compared as one space; ``…`` stands for any text).

Blocks of ``python`` run as a script; ``sh`` (``bash``, ``shell``) as one
bash script with ``set -e``; ``toml``, ``json`` and ``yaml`` are parsed;
``text`` (and no language) is output a reader sees, checked only with
``output``. Any other language needs ``skip`` or ``file``.

Page-wide, ``<!-- test-page: ports 4318 9464 -->`` replaces each port in the
page's blocks with a free one (so that parallel runs do not collide), and
``<!-- test-page: env K=V -->`` sets a variable for every block (``{port:N}``
is the free port standing for N), and ``<!-- test-page: needs promtool -->``
names the tools the page runs (a test asks for them with ``require``).

Each page runs in a scratch folder, with the venv's ``bin`` first on PATH (as
after ``source .venv/bin/activate``) and no ``SPANVISOR_``, ``OTEL_`` or
``SLACK_`` variable of the test's own environment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUNS = {"python", "sh", "bash", "shell"}
PARSED = {"toml", "json", "yaml", "yml"}
SHOWN = {"text", ""}
KEYS = {"skip", "file", "append", "env", "expect", "expect-once", "absent", "exit", "until", "background"}
KEYS |= {"concurrent", "after", "output", "timeout", "paste"}

_FENCE = re.compile(r"^( *)(`{3,})([\w+-]*)[^\n]*$")
_DIRECTIVE = re.compile(r"^<!--\s*test:\s*(.*?)\s*-->$")
_PAGE = re.compile(r"<!--\s*test-page:\s*(.*?)\s*-->")


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    directives: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.directives if k == key), None)

    def all(self, key: str) -> list[str]:
        return [v for k, v in self.directives if k == key]

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse(path: Path) -> tuple[list[Block], list[str]]:
    """The page's blocks with their directives, and its page-wide directives."""
    name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        if m := _DIRECTIVE.match(text):
            key, _, value = m.group(1).partition(" ")
            if key not in KEYS:
                raise ValueError(f"{name}:{i + 1}: unknown directive {key!r} (known: {sorted(KEYS)})")
            pending.append((key, _unquote(value)))
        elif m := _FENCE.match(lines[i]):
            indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)), None)
            if end is None:
                raise ValueError(f"{name}:{i + 1}: the code block never closes")
            code = "\n".join(ln[indent:] for ln in lines[i + 1 : end]) + "\n"
            blocks.append(Block(name, i + 1, lang, code, pending))
            pending = []
            i = end
        elif text:
            pending = []
        i += 1
    page = [m.group(1) for m in _PAGE.finditer("\n".join(lines))]
    return blocks, page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    env["SPANVISOR_DATA_DIR"] = str(scratch / "data")
    return env


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for word in shlex.split(text):
        key, eq, value = word.partition("=")
        if not eq:
            raise ValueError(f"env wants K=V, got {word!r}")
        out[key] = value
    return out


def _matches(expected: str, actual_lines: list[str]) -> bool:
    want = " ".join(expected.split())
    pattern = re.compile(".*".join(re.escape(part) for part in want.split("…")))
    return any(pattern.search(" ".join(line.split())) for line in actual_lines)


class PageRun:
    """One page's blocks, run in order in ``scratch``."""

    def __init__(self, path: Path, scratch: Path) -> None:
        self.blocks, page = parse(path)
        self.scratch = scratch
        self.env = base_env(scratch)
        self.ports: dict[str, str] = {}
        self.needs: list[str] = []
        for directive in page:
            key, _, value = directive.partition(" ")
            if key == "ports":
                self.ports.update((p, str(free_port())) for p in value.split())
            elif key == "needs":
                self.needs += value.split()
            elif key == "env":
                self.env.update({k: self._ported(v) for k, v in _pairs(value).items()})
            else:
                raise ValueError(f"{path.name}: unknown page directive {key!r}")
        self.running: dict[str, tuple[Block, subprocess.Popen[str], bool]] = {}
        self.last_output = ""
        self.ran: list[Block] = []
        self.skipped: list[tuple[Block, str]] = []

    def _ported(self, text: str) -> str:
        for port, free in self.ports.items():
            text = text.replace(f"{{port:{port}}}", free)
        return text

    def _code(self, block: Block) -> str:
        code = block.code
        for port, free in self.ports.items():
            code = re.sub(rf"(?<![\w.]){port}(?!\d)", free, code)
        return code

    def _block_env(self, block: Block) -> dict[str, str]:
        env = dict(self.env)
        for value in block.all("env"):
            env.update({k: self._ported(v) for k, v in _pairs(value).items()})
        return env

    def run(self) -> None:
        try:
            for block in self.blocks:
                self.one(block)
        except BaseException:
            for _, proc, _ in self.running.values():  # a failure is reported as it is, at once
                _kill(proc)
            self.running.clear()
            self.stop_database()
            raise
        self.stop()

    def one(self, block: Block) -> None:
        if (why := block.get("skip")) is not None:
            assert len(why.split()) >= 3, f"{block.where}: say why the block is skipped"
            self.skipped.append((block, why))
            return
        for name in block.all("after"):
            self.join(name)
        if (target := block.get("file") or block.get("append")) is not None:
            self.write(block, target)
            return
        if block.lang in SHOWN:
            if block.get("output") is not None:
                actual = self.last_output.splitlines()
                missing = [ln for ln in block.code.splitlines() if ln.strip() and not _matches(ln, actual)]
                assert not missing, f"{block.where}: not in the output above: {missing}\n---\n{self.last_output}"
            return
        if block.lang in PARSED:
            self.parsed(block, self._code(block))
            return
        assert block.lang in RUNS, f"{block.where}: a {block.lang!r} block needs `skip` or `file`"
        self.execute(block)

    def write(self, block: Block, target: str) -> None:
        code = self._code(block)
        path = self.scratch / target
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = "a" if block.get("append") is not None else "w"
        with path.open(mode, encoding="utf-8") as f:
            f.write(code)
        if block.lang == "python":
            compile(path.read_text(encoding="utf-8"), str(path), "exec")
        elif block.lang in PARSED:
            self.parsed(block, path.read_text(encoding="utf-8"))
        self.ran.append(block)

    def parsed(self, block: Block, text: str) -> None:
        try:
            if block.lang == "toml":
                tomllib.loads(text)
            elif block.lang == "json":
                json.loads(text)
            else:
                _yaml(text)
        except Exception as exc:
            raise AssertionError(f"{block.where}: the {block.lang} block does not parse: {exc}") from None
        self.ran.append(block)

    def _argv(self, block: Block) -> list[str]:
        code = self._code(block)
        if (text := block.get("paste")) is not None:
            line = next((ln for ln in self.last_output.splitlines() if text in ln), None)
            assert line is not None, f"{block.where}: no line with {text!r} to paste\n---\n{self.last_output}"
            code = line.split("   (")[0].strip() + "\n"
        if block.lang == "python":
            script = self.scratch / f"block_{block.line}.py"
            script.write_text(code, encoding="utf-8")
            return [sys.executable, script.name]
        return ["bash", "-c", "set -e\n" + code]

    def _start(self, block: Block) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self._argv(block),
            cwd=self.scratch,
            env=self._block_env(block),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def execute(self, block: Block) -> None:
        for kind in ("background", "concurrent"):
            if (name := block.get(kind)) is not None:
                self.running[name] = (block, self._start(block), kind == "concurrent")
                self.ran.append(block)
                return
        timeout = float(block.get("timeout") or 120)
        until = block.get("until")
        deadline = time.monotonic() + 60
        while True:
            proc = self._start(block)
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill(proc)
                out, _ = proc.communicate()
                raise AssertionError(f"{block.where}: still running after {timeout:g} s\n---\n{out}") from None
            if until is None or until in out or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        if until is not None:
            assert until in out, f"{block.where}: {until!r} never showed in a minute\n---\n{out}"
        self.check(block, proc.returncode, out)
        self.last_output = out
        self.ran.append(block)

    def check(self, block: Block, code: int, out: str) -> None:
        want = int(block.get("exit") or 0)
        assert code == want, f"{block.where}: exit status {code}, not {want}\n---\n{out}"
        for text in block.all("expect"):
            assert text in out, f"{block.where}: {text!r} not in the output\n---\n{out}"
        for text in block.all("expect-once"):
            assert out.count(text) == 1, f"{block.where}: {text!r} {out.count(text)} times, not once\n---\n{out}"
        for text in block.all("absent"):
            assert text not in out, f"{block.where}: {text!r} in the output\n---\n{out}"

    def join(self, name: str, timeout: float = 120) -> None:
        block, proc, must_end = self.running.pop(name)
        if not must_end:
            _kill(proc)
            self.last_output, _ = proc.communicate()
            return
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            out, _ = proc.communicate()
            raise AssertionError(f"{block.where}: {name} did not end within {timeout:g} s\n---\n{out}") from None
        self.check(block, proc.returncode, out)
        self.last_output = out

    def stop(self) -> None:
        problems = []
        for name in list(self.running):
            try:
                self.join(name)
            except AssertionError as exc:
                problems.append(str(exc))
        self.stop_database()
        assert not problems, "\n".join(problems)

    def stop_database(self) -> None:
        """An embedded PostgreSQL the page's commands started (the demo,
        serve, `spanvisor tasks`) stops with the last process that holds it;
        one whose holder was killed would run on, so it is stopped here."""
        if (self.scratch / "data" / "postgres").is_dir():
            subprocess.run(
                [str(BIN / "spanvisor"), "db", "stop"],
                cwd=self.scratch,
                env=self.env,
                capture_output=True,
                timeout=60,
                check=False,
            )


def _yaml(text: str) -> Any:
    """PyYAML where it is installed (the frameworks' test dependencies bring
    it), else the subset reader the Collector configs' tests use."""
    try:
        import yaml
    except ImportError:
        from tests.receiver.collector_yaml import parse_yaml

        return parse_yaml(text)
    return list(yaml.safe_load_all(text))


def _kill(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the block's process group (a server drains), SIGKILL after 20 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
