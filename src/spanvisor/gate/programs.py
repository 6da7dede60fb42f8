"""The programs people allow most, and what each does beyond its words:
the options that run code or write files (``git -c``, ``find -exec``,
``tar --to-command``, ``sed 'e …'``, awk's ``system()``…), one check per
program and the table of them (:data:`PROGRAMS`). What an escape is, and
why an allow rule never allows one: :mod:`.escapes`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from spanvisor.gate.escapes import Arg, Escape, Kind

Check = Callable[[Sequence[Arg]], list[Escape]]
_ANY_OPTION = "an argument only known at run time may be one of {name}'s options that {what}"


def _opt(arg: Arg, *names: str) -> str | None:
    """The option ``arg`` is, of ``names`` (``--output=x``, ``-o``, ``-ox``
    for a one-letter one); None when it is none of them."""
    start = arg.start
    if start is None:
        return None
    for name in names:
        if start == name or (name.startswith("--") and start.startswith(name + "=")):
            return name
        if len(name) == 2 and not name.startswith("--") and start.startswith(name) and not start.startswith("--"):
            return name
    return None


def _value(args: Sequence[Arg], i: int, name: str) -> str | None:
    """The literal value of option ``name`` at ``args[i]`` (joined, after
    ``=``, or the next argument)."""
    start = args[i].literal
    if start is None:
        return None
    if start.startswith(name + "=") and name.startswith("--"):
        return start[len(name) + 1 :]
    if len(start) > len(name) and not name.startswith("--"):
        return start[len(name) :]
    return args[i + 1].literal if i + 1 < len(args) else None


def _unknown(name: str, args: Sequence[Arg], value_opts: frozenset[str], what: str, kind: Kind) -> list[Escape]:
    """An argument that may be any option: built at run time, not the value
    of an option before it that takes one."""
    for i, arg in enumerate(args):
        if arg.start is None and not (i > 0 and args[i - 1].literal in value_opts):
            if any(a.literal == "--" for a in args[:i]):
                return []
            return [Escape(kind, _ANY_OPTION.format(name=name, what=what))]
    return []


_GIT_VALUE_OPTS = frozenset(
    {"-m", "--message", "-F", "--file", "--author", "--date", "-b", "-B", "--branch", "-C", "--format", "--pretty"}
)
# git subcommands whose options may name a command they run.
_GIT_RUNNERS = frozenset(
    {"fetch", "pull", "clone", "push", "ls-remote", "archive", "difftool", "grep", "rebase", "send-email"}
)
_GIT_CONFIG_READS = frozenset(
    {
        "--get",
        "--get-all",
        "--get-regexp",
        "--list",
        "-l",
        "get",
        "list",
        "--show-origin",
        "--show-scope",
        "--get-urlmatch",
    }
)


def _git(args: Sequence[Arg]) -> list[Escape]:
    out: list[Escape] = []
    sub: str | None = None
    for i, arg in enumerate(args):
        if sub is None:
            opt = _opt(arg, "-c", "--config-env", "--exec-path")
            if opt == "--exec-path" and arg.start == "--exec-path":
                continue  # prints the path, runs nothing
            if opt is not None:
                out.append(Escape("runs", f"git {opt} sets what git runs (a pager, an alias, core.sshCommand, …)"))
                continue
            if arg.literal is not None and not arg.literal.startswith("-"):
                if i > 0 and args[i - 1].literal in ("-C", "--git-dir", "--work-tree", "--namespace"):
                    continue
                sub = arg.literal
            continue
        if _opt(arg, "--output", "--output-directory") or (sub == "format-patch" and _opt(arg, "-o")):
            out.append(Escape("does", f"git {sub} writes a file its option names"))
        if sub == "archive" and _opt(arg, "-o"):
            out.append(Escape("does", "git archive writes a file its option names"))
        if sub in _GIT_RUNNERS and _opt(
            arg,
            "--upload-pack",
            "--receive-pack",
            "--exec",
            "--extcmd",
            "--open-files-in-pager",
            "-O",
            "-x",
            "--sendmail-cmd",
            "--smtp-server",
            "--to-cmd",
            "--cc-cmd",
        ):
            out.append(Escape("runs", f"git {sub} runs the command its option names"))
        if sub in ("clone", "submodule") and _opt(arg, "--config", "--template", "-c"):
            out.append(Escape("runs", f"git {sub} sets what git runs (config, templates with hooks)"))
    if sub in ("submodule",) and any(a.literal == "foreach" for a in args):
        out.append(Escape("runs", "git submodule foreach runs the command it is given"))
    if sub == "bisect" and any(a.literal == "run" for a in args):
        out.append(Escape("runs", "git bisect run runs the command it is given"))
    if sub == "filter-branch":
        out.append(Escape("runs", "git filter-branch runs the filters it is given"))
    if sub == "config" and not any(a.literal in _GIT_CONFIG_READS for a in args):
        out.append(Escape("does", "git config sets what git runs later (a pager, an alias, a hook path)"))
    return out + _unknown("git", args, _GIT_VALUE_OPTS, "run code or write files", "runs")


_FIND_RUNS = ("-exec", "-execdir", "-ok", "-okdir")
# Tests whose next argument is their value, never an action.
_FIND_VALUE_OPTS = frozenset(
    {"-name", "-iname", "-path", "-ipath", "-wholename", "-regex", "-iregex", "-type", "-newer", "-user"}
    | {"-group", "-perm", "-size", "-mtime", "-mmin", "-maxdepth", "-mindepth", "-lname", "-ilname"}
)
_FIND_WRITES = ("-delete", "-fprint", "-fprint0", "-fprintf", "-fls")


def _find(args: Sequence[Arg]) -> list[Escape]:
    out = []
    for arg in args:
        if arg.literal in _FIND_RUNS:
            out.append(Escape("does", f"find {arg.literal} runs a command on every file found"))
        elif arg.literal in _FIND_WRITES:
            out.append(Escape("does", f"find {arg.literal} deletes or writes files"))
    return out + _unknown("find", args, _FIND_VALUE_OPTS, "run or delete", "runs")


def _tar(args: Sequence[Arg]) -> list[Escape]:
    out = []
    for i, arg in enumerate(args):
        opt = _opt(
            arg,
            "--to-command",
            "--checkpoint-action",
            "--use-compress-program",
            "--info-script",
            "--new-volume-script",
            "--rsh-command",
            "--rmt-command",
            "-I",
            "-F",
        )
        start = arg.literal or ""
        if opt is not None:
            out.append(Escape("runs", f"tar {opt} runs the command it names"))
        elif (i == 0 and not start.startswith("-") and "I" in start) or (
            start.startswith("-") and not start.startswith("--") and set("IF") & set(start[1:])
        ):
            # old-style (cvIf) and clustered (-cIf) letters: I and F name a program
            out.append(Escape("runs", "tar -I or -F in a cluster runs the program it names"))
    return out + _unknown("tar", args, frozenset({"-f", "--file", "-C", "--directory"}), "run commands", "runs")


def _rsync(args: Sequence[Arg]) -> list[Escape]:
    out = []
    for i, arg in enumerate(args):
        start = arg.start or ""
        if _opt(arg, "--rsh", "--rsync-path") or (
            start.startswith("-") and not start.startswith("--") and "e" in start[1:]
        ):
            name = "--rsync-path" if _opt(arg, "--rsync-path") else "-e"
            value = _value(args, i, "--rsh") if _opt(arg, "--rsh") else None
            if name == "-e" and not _opt(arg, "--rsh"):
                at = start.index("e", 1)
                value = start[at + 1 :] or (args[i + 1].literal if i + 1 < len(args) else None)
            if name == "-e" and value:
                out.append(Escape("does", "rsync -e runs the remote shell it names", value))
            else:
                out.append(Escape("runs", f"rsync {name} runs the command it names"))
    return out + _unknown("rsync", args, frozenset(), "run commands", "runs")


# Patterns are compiled when first used (re caches them), not on the hook's cold path.
_SSH_RUN_OPTIONS = r"(?i)^\s*(proxycommand|localcommand|permitlocalcommand|knownhostscommand)\b"


_SSH_VALUE_OPTS = frozenset(
    {"-p", "-l", "-i", "-J", "-L", "-R", "-D", "-W", "-b", "-c", "-E", "-e", "-m", "-O", "-w", "-P"}
)


def _ssh(args: Sequence[Arg]) -> list[Escape]:
    out = []
    for i, arg in enumerate(args):
        start = arg.start or ""
        if start == "-o" or (start.startswith("-o") and len(start) > 2):
            value = start[2:] if len(start) > 2 else (args[i + 1].literal if i + 1 < len(args) else None)
            if value is None or re.match(_SSH_RUN_OPTIONS, value):
                out.append(Escape("runs", "ssh -o ProxyCommand/LocalCommand runs the command it names"))
        elif start.startswith("-F"):
            out.append(Escape("runs", "ssh -F reads a config file that may name commands it runs"))
    return out + _unknown("ssh", args, _SSH_VALUE_OPTS, "run commands", "runs")


def _scp(args: Sequence[Arg]) -> list[Escape]:
    out = [Escape("runs", "scp/sftp -S runs the program it names") for a in args if _opt(a, "-S", "-D")]
    return out + _ssh(args)


# sed: the commands and s/// flags that run or write (GNU sed's e, w, W).
def _sed_script_escapes(script: str) -> list[Escape]:
    if _sed_runs(script):
        return [Escape("runs", "a sed program with e, w or W runs a command or writes a file")]
    return []


def _sed_runs(script: str) -> bool:
    """Whether a sed program may use ``e`` (run), ``w``/``W`` (write) or
    ``r``-less forms of them in ``s///`` flags. Read command by command;
    anything it cannot follow counts as running."""
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        if ch in " \t\n;{}!,0123456789$+~":
            i += 1
            continue
        if ch in "/\\":  # an address /re/ or \cREc
            delim = script[i + 1] if ch == "\\" and i + 1 < n else "/"
            i = _past(script, i + (2 if ch == "\\" else 1), delim)
            if i < 0:
                return True
            while i < n and script[i] in "IM":
                i += 1
            continue
        if ch in "ewW":
            return True
        if ch in "sy":
            if i + 1 >= n:
                return True
            delim = script[i + 1]
            if delim in "\n\\":
                return True
            i = _past(script, i + 2, delim)
            if i < 0:
                return True
            i = _past(script, i, delim)
            if i < 0:
                return True
            if ch == "s":
                while i < n and script[i] not in ";\n}":
                    if script[i] in "ewW":
                        return True
                    i += 1
            continue
        if ch in "aic":  # text to the end of the line
            end = script.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if ch in "rRbtTqQlL:#vzFdDgGhHnNpPx=":
            if ch in "rRbtT:#v":  # a label, a file to read or a comment: to the end of the line or ;
                # (GNU sed ends a label at ; as well; a file name it reads to
                # the end of the line, so stopping at ; only finds more)
                while i < n and script[i] not in "\n" + (";" if ch != "#" else ""):
                    i += 1
                continue
            i += 1
            continue
        return True
    return False


def _past(text: str, i: int, delim: str) -> int:
    """The index just past the next unescaped ``delim`` from ``i``; -1 if none."""
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == delim:
            return i + 1
        i += 1
    return -1


def _sed(args: Sequence[Arg]) -> list[Escape]:
    out: list[Escape] = []
    scripts: list[str] = []
    script_given = False
    i = 0
    while i < len(args):
        arg = args[i]
        lit = arg.literal
        if lit is None:
            if not script_given or (i > 0 and args[i - 1].literal in ("-e", "--expression")):
                return [Escape("runs", "a sed program built at run time may run a command")]
            i += 1  # a file to read
            continue
        if lit in ("-l", "--line-length") and i + 1 < len(args):
            i += 2
            continue
        if lit in ("-e", "--expression") and i + 1 < len(args):
            nxt = args[i + 1].literal
            if nxt is None:
                return [Escape("runs", "a sed program built at run time may run a command")]
            scripts.append(nxt)
            script_given = True
            i += 2
            continue
        if lit.startswith("--expression="):
            scripts.append(lit.split("=", 1)[1])
            script_given = True
        elif _opt(arg, "-f", "--file"):
            out.append(Escape("runs", "sed -f reads a program that may run a command"))
            script_given = True
        elif _opt(arg, "-i", "--in-place") or (lit.startswith("-") and not lit.startswith("--") and "i" in lit):
            out.append(Escape("does", "sed -i writes the files it reads"))
        elif not lit.startswith("-") and not script_given:
            scripts.append(lit)
            script_given = True
        i += 1
    for script in scripts:
        out += _sed_script_escapes(script)
    return out


# system(), a pipe into or out of a command (print | "cmd", "cmd" | getline,
# gawk's |&), and gawk's @ (@load, @include, an indirect call @f() that may
# be system); a | in a regular expression is none of them.
_AWK_RUNS = r"\bsystem\s*\(|\|&?\s*getline\b|\bprintf?\b[^;}\n]*(?<!\|)\|(?!\|)|@\w"
_AWK_WRITES = r"\bprintf?\b[^;}\n]*>"


def _awk(args: Sequence[Arg]) -> list[Escape]:
    out: list[Escape] = []
    program_seen = False
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        lit = arg.literal
        if lit is None:
            if not program_seen:
                return [Escape("runs", "an awk program built at run time may run a command")]
            continue
        if _opt(arg, "-f", "--file", "-i", "--include", "-l", "--load", "-E", "--exec"):
            out.append(Escape("runs", "awk reads a program from a file, which may run a command"))
            program_seen = True
            skip = lit in ("-f", "--file", "-i", "--include", "-l", "--load", "-E", "--exec")
            continue
        if lit in ("-v", "--assign", "-F", "--field-separator"):
            skip = True
            continue
        if lit.startswith("-") and not program_seen:
            continue
        if not program_seen:
            program_seen = True
            if re.search(_AWK_RUNS, lit):
                out.append(Escape("runs", "an awk program with system() or a pipe runs a command"))
            elif re.search(_AWK_WRITES, lit):
                out.append(Escape("does", "an awk program that prints to a file writes it"))
    return out


def _pager(name: str) -> Check:
    def check(args: Sequence[Arg]) -> list[Escape]:
        return [Escape("runs", f"{name} runs the commands typed at it (!cmd) and its input filters")]

    return check


def _env(args: Sequence[Arg]) -> list[Escape]:
    for arg in args:
        if _opt(arg, "-S", "--split-string") or (arg.start or "").startswith("-S"):
            return [Escape("runs", "env -S splits a string into the command it runs")]
        if arg.literal is not None and not arg.literal.startswith("-") and "=" not in arg.literal:
            break
    return []


def _xargs(args: Sequence[Arg]) -> list[Escape]:
    return [Escape("does", "xargs runs its command with arguments read at run time")]


# Package managers: what does not run the package's scripts (install, run,
# test and the rest run code from package.json, setup.py, …).
_PACKAGE_READS: dict[str, frozenset[str]] = {
    "npm": frozenset(
        {"ls", "list", "ll", "la", "view", "v", "info", "show", "outdated", "help", "search", "whoami", "explain"}
        | {"why", "query", "ping", "prefix", "root", "bin", "--version", "-v", "-h", "--help", "audit", "doctor"}
    ),
    "pnpm": frozenset({"ls", "list", "why", "outdated", "view", "info", "help", "--version", "-v", "audit"}),
    "yarn": frozenset({"info", "list", "why", "outdated", "help", "--version", "-v", "audit"}),
    "bun": frozenset({"--version", "-v", "--help", "pm"}),
    "pip": frozenset({"list", "show", "freeze", "check", "help", "--version", "-V", "search", "index", "inspect"}),
}


def _package(name: str) -> Check:
    reads = _PACKAGE_READS[name]

    def check(args: Sequence[Arg]) -> list[Escape]:
        sub = next((a for a in args if a.literal is None or not a.literal.startswith("-")), None)
        if sub is None:
            if name == "yarn" and not any(a.literal in reads for a in args):
                return [Escape("does", "yarn alone installs, running the packages' scripts")]
            return []  # its help or version
        if sub.literal in reads and not any(a.literal == "fix" for a in args):
            return []
        shown = sub.literal if sub.literal is not None else "…"
        return [Escape("does", f"{name} {shown} may run the package's own scripts (install, run, test, …)")]

    return check


def _runner(name: str) -> Check:
    def check(args: Sequence[Arg]) -> list[Escape]:
        return [Escape("does", f"{name} downloads and runs a package")]

    return check


def _python(args: Sequence[Arg]) -> list[Escape]:
    for i, arg in enumerate(args):
        if arg.literal == "-m" and i + 1 < len(args) and args[i + 1].literal in ("pip", "pip3"):
            return _package("pip")(args[i + 2 :])
        if arg.literal is None or not arg.literal.startswith("-"):
            break
    return []


def _output(name: str, *options: str) -> Check:
    def check(args: Sequence[Arg]) -> list[Escape]:
        found = next((o for a in args if (o := _opt(a, *options)) is not None), None)
        return [Escape("does", f"{name} {found} writes the file it names")] if found else []

    return check


def _runs_option(name: str, *options: str) -> Check:
    def check(args: Sequence[Arg]) -> list[Escape]:
        found = next((o for a in args if (o := _opt(a, *options)) is not None), None)
        return [Escape("runs", f"{name} {found} runs the program it names")] if found else []

    return check


def _alias(args: Sequence[Arg]) -> list[Escape]:
    out = []
    for arg in args:
        if arg.literal is None:
            return [Escape("runs", "an alias built at run time may stand for any command")]
        name, eq, value = arg.literal.partition("=")
        if eq and value.strip():
            out.append(Escape("does", f"alias {name} stands for a command the next lines run", value))
    return out


def _trap(args: Sequence[Arg]) -> list[Escape]:
    first = next((a for a in args if a.literal is None or not a.literal.startswith("-") or a.literal == "-"), None)
    if first is None or first.literal in ("-", ""):
        return []  # prints, or resets
    if first.literal is None:
        return [Escape("runs", "a trap built at run time runs any command")]
    return [Escape("does", "trap runs its command when the signal comes", first.literal)]


def _builtin_loads(name: str, option: str, why: str) -> Check:
    def check(args: Sequence[Arg]) -> list[Escape]:
        if any(a.start is None or (a.start or "").startswith(option) for a in args):
            return [Escape("runs", f"{name} {option} {why}")]
        return []

    return check


PROGRAMS: dict[str, Check] = {
    "alias": _alias,
    "trap": _trap,
    "hash": _builtin_loads("hash", "-p", "makes a command name run another program"),
    "enable": _builtin_loads("enable", "-f", "loads a builtin from a shared library"),
    "git": _git,
    "find": _find,
    "tar": _tar,
    "gtar": _tar,
    "bsdtar": _tar,
    "rsync": _rsync,
    "ssh": _ssh,
    "scp": _scp,
    "sftp": _scp,
    "sed": _sed,
    "gsed": _sed,
    "awk": _awk,
    "gawk": _awk,
    "mawk": _awk,
    "nawk": _awk,
    "less": _pager("less"),
    "more": _pager("more"),
    "most": _pager("most"),
    "pg": _pager("pg"),
    "vi": _pager("vi"),
    "vim": _pager("vim"),
    "nvim": _pager("nvim"),
    "view": _pager("view"),
    "ex": _pager("ex"),
    "ed": _pager("ed"),
    "env": _env,
    "xargs": _xargs,
    "npm": _package("npm"),
    "pnpm": _package("pnpm"),
    "yarn": _package("yarn"),
    "bun": _package("bun"),
    "pip": _package("pip"),
    "pip3": _package("pip"),
    "python": _python,
    "python3": _python,
    "npx": _runner("npx"),
    "pnpx": _runner("pnpx"),
    "bunx": _runner("bunx"),
    "curl": _output(
        "curl",
        "-o",
        "--output",
        "-O",
        "--remote-name",
        "--remote-name-all",
        "-D",
        "--dump-header",
        "-c",
        "--cookie-jar",
        "--trace",
        "--trace-ascii",
        "-K",
        "--config",
    ),
    "wget": _output(
        "wget", "-O", "--output-document", "-o", "--output-file", "-a", "--append-output", "-e", "--execute"
    ),
    "sort": _output("sort", "-o", "--output", "--compress-program"),
    "rg": _runs_option("rg", "--pre"),
    "man": _runs_option("man", "-P", "--pager", "-H", "--html"),
    "zip": _runs_option("zip", "-TT", "--unzip-command"),
}


def program(name: str, args: Sequence[Arg]) -> list[Escape]:
    """What the simple command ``name args…`` does beyond its words (its
    base name looked up: ``/usr/bin/git`` is ``git``)."""
    check = PROGRAMS.get(name)
    return check(args) if check is not None else []


__all__ = ["PROGRAMS", "Check", "program"]
