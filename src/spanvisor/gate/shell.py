"""A shell command as the simple commands it runs.

A policy that matches one glob against a whole command string is walked
past by chaining (``ls && rm -rf ~``), pipes (``ls | sh``), substitutions
(``ls $(rm x)``) and wrappers (``bash -c '…'``, ``sudo``, ``xargs``). So
the gate parses the command with tree-sitter's bash grammar (a maintained
parser that reads ``case``, ``[[ … ]]``, arithmetic, here-documents and
process substitution, where bashlex gives up) and lists every simple
command anywhere in it: in lists and pipelines, in ``$(…)``, backticks and
``<(…)``, in subshells, groups, functions, loops and conditions, inside
``bash -c``/``sh -c`` strings and ``eval`` arguments, and behind wrappers
(``sudo``, ``env``, ``timeout``, ``nohup``, ``xargs``, ``find -exec``, …).
A write redirection (``> file``) is a unit of its own, since it writes a
file whatever the command is. What cannot be read statically (a syntax
error, a command name made of expansions, a ``bash -c`` string built at run
time, nesting past a bound) is reported, and the policy never allows it.
"""

from __future__ import annotations

import os.path
from typing import NamedTuple

import tree_sitter

from spanvisor.gate import words

# Deeper than any command a person writes: past it, a command is unread.
MAX_DEPTH = 12
# Longer commands are not read (and so never allowed by a rule).
MAX_COMMAND = 100_000
_SHELLS = frozenset({"bash", "sh", "zsh", "dash", "ksh", "mksh", "ash", "busybox"})
# Shell options that take a value (the value is not the -c string).
_SHELL_VALUE_OPTS = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})
# Wrappers run the command that follows their options (and N positionals).
# name: (options that take a separate value, positionals before the command)
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "sudo": (frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T", "-R"}), 0),
    "doas": (frozenset({"-u", "-C"}), 0),
    "env": (frozenset({"-u", "--unset", "-C", "--chdir"}), 0),
    "nohup": (frozenset(), 0),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "ionice": (frozenset({"-c", "--class", "-n", "--classdata", "-p", "--pid"}), 0),
    "timeout": (frozenset({"-s", "--signal", "-k", "--kill-after"}), 1),
    "time": (frozenset({"-f", "--format", "-o", "--output"}), 0),
    "command": (frozenset(), 0),
    "builtin": (frozenset(), 0),
    "exec": (frozenset({"-a"}), 0),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "setsid": (frozenset(), 0),
    "coproc": (frozenset(), 0),
    "xargs": (
        frozenset({"-I", "-i", "-n", "-P", "-L", "-l", "-s", "-d", "-E", "-e", "-a", "--arg-file", "--delimiter"}),
        0,
    ),
    "taskset": (frozenset(), 1),
    "chrt": (frozenset(), 1),
    "flock": (frozenset({"-w", "--timeout", "-E", "--conflict-exit-code"}), 1),
    "unbuffer": (frozenset(), 0),
    "caffeinate": (frozenset({"-t", "-w"}), 0),
    "strace": (frozenset({"-o", "-e", "-p", "-s", "-u"}), 0),
    "ltrace": (frozenset({"-o", "-e", "-p", "-s", "-u"}), 0),
}
# Variables whose assignment changes what a later command runs.
_RISKY_VARS = frozenset(
    {"PATH", "IFS", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "CDPATH", "GLOBIGNORE"}
)
_WRITE_OPS = {">": ">", ">|": ">", "&>": ">", ">>": ">>", "&>>": ">>", "<>": ">", ">&": ">"}
_HARMLESS_SINKS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty", "-"})
_FIND_EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})


def _bash_language() -> tree_sitter.Language:
    """The bash grammar. Its package's ``__init__`` imports
    ``importlib.resources`` (for a query file the gate never reads), which
    costs the hook more than the grammar itself: so the compiled binding is
    loaded by itself when it can be, the package the usual way otherwise."""
    try:
        import importlib.machinery
        import importlib.util

        spec = importlib.util.find_spec("tree_sitter_bash")
        where = spec.submodule_search_locations if spec is not None else None
        for folder in where or ():
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(folder, "_binding" + suffix)
                if os.path.exists(path):
                    loader = importlib.machinery.ExtensionFileLoader("tree_sitter_bash._binding", path)
                    binding = importlib.util.spec_from_file_location("tree_sitter_bash._binding", path, loader=loader)
                    if binding is not None:
                        module = importlib.util.module_from_spec(binding)
                        loader.exec_module(module)
                        return tree_sitter.Language(module.language())
    except (ImportError, OSError, AttributeError):
        pass
    import tree_sitter_bash

    return tree_sitter.Language(tree_sitter_bash.language())


_BASH = _bash_language()


class Unit(NamedTuple):
    """One thing the command runs: a simple command's words (quotes
    removed where the word is literal, as written where it is not), or a
    write redirection (``> path``)."""

    text: str
    # The command's name, literal; None for a redirection.
    name: str | None = None

    @property
    def bare(self) -> str | None:
        """The text with a command path cut to its base name (``/bin/rm -rf x``
        → ``rm -rf x``): deny and ask rules match it too; allow rules do not,
        since a file named ``ls`` elsewhere is not ``ls``."""
        if self.name is None or "/" not in self.name:
            return None
        base = os.path.basename(self.name)
        return base + self.text[len(self.name) :] if base else None


class Parsed(NamedTuple):
    """A command read: its units, and why any part of it could not be read
    (empty when all of it was)."""

    units: tuple[Unit, ...]
    unread: tuple[str, ...] = ()

    @property
    def readable(self) -> bool:
        return not self.unread


class _Walk:
    __slots__ = ("units", "unread")

    def __init__(self) -> None:
        self.units: list[Unit] = []
        self.unread: list[str] = []


def parse(command: str) -> Parsed:
    """Every simple command ``command`` runs, and what could not be read."""
    if len(command) > MAX_COMMAND:
        return Parsed((), (f"the command is {len(command):,} characters, over the {MAX_COMMAND:,} the gate reads",))
    walk = _Walk()
    _source(command, walk, 0)
    seen: dict[Unit, None] = dict.fromkeys(walk.units)
    return Parsed(tuple(seen), tuple(dict.fromkeys(walk.unread)))


def _source(command: str, walk: _Walk, depth: int) -> None:
    if depth > MAX_DEPTH:
        walk.unread.append("commands nested deeper than the gate reads")
        return
    data = command.encode("utf-8", "surrogatepass")
    # The grammar's scanner crashes the process on some text with non-ASCII
    # characters (found by fuzzing; none with ASCII alone). Bash reads every
    # non-ASCII byte as part of a word, so each such character is parsed as
    # as many ASCII letters, and the words are read from the real bytes by
    # offset.
    shape = data if data.isascii() else bytes(b if b < 0x80 else 0x78 for b in data)
    root = tree_sitter.Parser(_BASH).parse(shape).root_node
    if root.has_error:
        walk.unread.append("the shell could not read it (a syntax error, or a form the parser does not know)")
    words.SOURCE.stack.append(data)
    try:
        _node(root, walk, depth)
    finally:
        words.SOURCE.stack.pop()


def _node(node: tree_sitter.Node, walk: _Walk, depth: int) -> None:
    kind = node.type
    if kind == "command":
        _command(node, walk, depth)
    elif kind in ("declaration_command", "unset_command"):
        walk.units.append(Unit(" ".join(words.word(c) for c in node.children), words.text(node.children[0])))
    elif kind == "variable_assignment":
        name = node.child_by_field_name("name")
        if name is not None and words.text(name) in _RISKY_VARS:
            walk.units.append(Unit(words.word(node), None))
    elif kind == "file_redirect":
        _redirect(node, walk)
    for child in node.children:
        if kind == "command" and child.type not in ("command_substitution", "process_substitution"):
            # A command's own words are read by _command; only what runs
            # inside them is walked here, below.
            _substitutions(child, walk, depth)
            continue
        _node(child, walk, depth)


def _substitutions(node: tree_sitter.Node, walk: _Walk, depth: int) -> None:
    if node.type in ("command_substitution", "process_substitution", "file_redirect"):
        _node(node, walk, depth)
        return
    for child in node.children:
        _substitutions(child, walk, depth)


def _command(node: tree_sitter.Node, walk: _Walk, depth: int) -> None:
    name_node = node.child_by_field_name("name")
    if name_node is None:
        return
    argv = [name_node, *node.children_by_field_name("argument")]
    for assignment in (c for c in node.children if c.type == "variable_assignment"):
        var = assignment.child_by_field_name("name")
        if var is not None and (words.text(var) in _RISKY_VARS or words.text(var).startswith(("LD_", "DYLD_"))):
            walk.units.append(Unit(words.word(assignment), None))
    _argv([(words.literal(w), words.word(w)) for w in argv], walk, depth)


def _argv(argv: list[tuple[str | None, str]], walk: _Walk, depth: int) -> None:
    """One simple command given as (literal value or None, text) words."""
    if not argv:
        return
    name = argv[0][0]
    if name is None or not name or words.globbing(name):
        walk.unread.append(f"a command name the gate cannot know before it runs ({argv[0][1][:60]})")
        walk.units.append(Unit(" ".join(t for _, t in argv), None))
        return
    walk.units.append(Unit(" ".join(lit if lit is not None else t for lit, t in argv), name))
    base = os.path.basename(name)
    rest = argv[1:]
    if base in _SHELLS:
        _shell_c(rest, walk, depth)
    elif base == "eval":
        if all(lit is not None for lit, _ in rest):
            _source(" ".join(lit or "" for lit, _ in rest), walk, depth + 1)
        else:
            walk.unread.append("eval of text built at run time")
    elif base == "find":
        _find_exec(rest, walk, depth)
    elif base == "watch":
        inner = _skip_options(rest, frozenset({"-n", "--interval", "-d"}), 0)
        if inner:
            if all(lit is not None for lit, _ in inner):
                _source(" ".join(lit or "" for lit, _ in inner), walk, depth + 1)
            else:
                walk.unread.append("watch of text built at run time")
    elif base in _WRAPPERS:
        value_opts, positionals = _WRAPPERS[base]
        inner = _skip_options(rest, value_opts, positionals, assignments=base in ("env", "sudo"))
        if inner:
            _argv(inner, walk, depth + 1)


def _skip_options(
    argv: list[tuple[str | None, str]], value_opts: frozenset[str], positionals: int, assignments: bool = False
) -> list[tuple[str | None, str]]:
    i = 0
    while i < len(argv):
        lit = argv[i][0]
        if lit == "--":
            i += 1
            break
        if lit is not None and lit.startswith("-") and len(lit) > 1:
            i += 2 if lit in value_opts else 1
            continue
        if assignments and lit is not None and "=" in lit and not lit.startswith("="):
            i += 1
            continue
        break
    return argv[i + positionals :]


def _shell_c(argv: list[tuple[str | None, str]], walk: _Walk, depth: int) -> None:
    i = 0
    while i < len(argv):
        lit = argv[i][0]
        if lit is None or not lit.startswith(("-", "+")) or lit in ("-", "--"):
            return  # a script or stdin: the unit itself is all there is
        if lit in _SHELL_VALUE_OPTS:
            i += 2
            continue
        if not lit.startswith("--") and "c" in lit[1:]:
            if i + 1 >= len(argv):
                return
            script = argv[i + 1][0]
            if script is None:
                walk.unread.append("a shell -c string built at run time")
            else:
                _source(script, walk, depth + 1)
            return
        i += 1


def _find_exec(argv: list[tuple[str | None, str]], walk: _Walk, depth: int) -> None:
    i = 0
    while i < len(argv):
        if argv[i][0] in _FIND_EXEC:
            j = i + 1
            while j < len(argv) and argv[j][0] not in (";", "+"):
                j += 1
            _argv(argv[i + 1 : j], walk, depth + 1)
            i = j
        i += 1


def _redirect(node: tree_sitter.Node, walk: _Walk) -> None:
    op = next((c.type for c in node.children if not c.is_named), "")
    if op not in _WRITE_OPS:
        return
    dest = node.child_by_field_name("destination")
    if dest is None:
        return
    literal = words.literal(dest)
    if op == ">&" and (literal is None or literal.isdigit() or literal == "-"):
        if literal is None:
            walk.units.append(Unit(f"> {words.word(dest)}", None))
        return
    if literal in _HARMLESS_SINKS:
        return
    walk.units.append(Unit(f"{_WRITE_OPS[op]} {literal if literal is not None else words.word(dest)}", None))


__all__ = ["MAX_COMMAND", "Parsed", "Unit", "parse"]
