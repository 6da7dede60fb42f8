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

A command can also do more than its words: arithmetic evaluates ``a[$(…)]``
hidden in a variable, ``git -c core.pager=…`` runs a pager, ``find
-delete`` deletes. Those forms are listed in :mod:`.escapes`: code the gate
does not read is reported as unread, and a command that does more than its
words carries the reason (:attr:`Unit.risk`), so no allow rule allows it.
"""

from __future__ import annotations

import os.path
import re
from typing import NamedTuple

import tree_sitter

from spanvisor.gate import escapes, programs, words

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
# A word: its literal value (None: known at run time), its text, and what
# it certainly starts with as one word (None: an expansion may split or start it).
Word = tuple[str | None, str, str | None]
# Arithmetic's words that are numbers, never a variable bash would evaluate.
_NUMBER = re.compile(r"^(?:0[xX][0-9a-fA-F]+|[0-9]+#[0-9a-zA-Z@_]+|[0-9]+)$")
# Special parameters, always numbers or flags: safe in arithmetic.
_SPECIAL = frozenset({"#", "?", "$", "!", "-", "0"})
_HEREDOC_ARITH = re.compile(r"\$\(\((.*?)\)\)|\$\[(.*?)\]", re.S)
_ARRAY_INDEX = re.compile(r"^\[([^\]]*)\]\+?=", re.S)
_ARITH_TESTS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
# ${name:offset[:length]}: offset and length are arithmetic (tree-sitter does
# not always parse them), so they are found in the text.
_OFFSET = re.compile(r"\$\{[#!]?[A-Za-z_][A-Za-z_0-9]*(?:\[[^\]]*\])?:(?![-=?+])([^}]*)\}")
# Builtins that take variable names: a name bash evaluates (a[$(…)]).
# name: (options whose value is a name, options that take another value, every other word is a name)
_NAME_BUILTINS: dict[str, tuple[frozenset[str], frozenset[str], bool]] = {
    "read": (frozenset({"-a"}), frozenset({"-p", "-d", "-t", "-n", "-N", "-u", "-i"}), True),
    "mapfile": (frozenset(), frozenset({"-d", "-n", "-O", "-s", "-u", "-c"}), True),
    "readarray": (frozenset(), frozenset({"-d", "-n", "-O", "-s", "-u", "-c"}), True),
    "printf": (frozenset({"-v"}), frozenset(), False),
    "test": (frozenset({"-v", "-R"}), frozenset(), False),
    "[": (frozenset({"-v", "-R"}), frozenset(), False),
    "unset": (frozenset(), frozenset(), True),
    "getopts": (frozenset(), frozenset(), False),
    "wait": (frozenset({"-p"}), frozenset(), False),
    "export": (frozenset(), frozenset(), True),
    "declare": (frozenset(), frozenset(), True),
    "typeset": (frozenset(), frozenset(), True),
    "local": (frozenset(), frozenset(), True),
    "readonly": (frozenset(), frozenset(), True),
}
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
    # Why no allow rule allows it (it does more than its words: escapes); None: nothing.
    risk: str | None = None

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
    for m in _OFFSET.finditer(command):
        if any(c.isalpha() or c in "_$`" for c in m.group(1)):
            walk.unread.append(escapes.ARITHMETIC)
            break
    words.SOURCE.stack.append(data)
    try:
        _node(root, walk, depth)
    finally:
        words.SOURCE.stack.pop()


def _node(node: tree_sitter.Node, walk: _Walk, depth: int) -> None:
    kind = node.type
    _form(node, walk)
    if kind == "command":
        _command(node, walk, depth)
    elif kind in ("declaration_command", "unset_command"):
        _declaration(node, walk, depth)
    elif kind == "variable_assignment":
        if node.parent is None or node.parent.type != "declaration_command":
            _assignment(node, walk, depth, None)
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
    _form(node, walk)
    for child in node.children:
        _substitutions(child, walk, depth)


def _form(node: tree_sitter.Node, walk: _Walk) -> None:
    """The shell's own forms that run code hidden in a variable's value
    (:mod:`.escapes` says why each does)."""
    kind = node.type
    if kind in ("arithmetic_expansion", "c_style_for_statement") or (
        kind == "compound_statement" and node.child_count and node.children[0].type == "(("
    ):
        if _evaluates(node):
            walk.unread.append(escapes.ARITHMETIC)
    elif kind == "binary_expression" and _in_double_brackets(node):
        if any(c.type == "test_operator" and words.text(c) in _ARITH_TESTS for c in node.children) and _evaluates(node):
            walk.unread.append(escapes.ARITHMETIC)
    elif kind == "heredoc_body" and _expands(node):
        # The grammar reads $((x)) in a here-document as a command x: bash evaluates it.
        if any(_names_something(m.group(1) or m.group(2) or "") for m in _HEREDOC_ARITH.finditer(words.text(node))):
            walk.unread.append(escapes.ARITHMETIC)
    elif kind == "unary_expression" and _in_double_brackets(node):
        op = next((words.text(c) for c in node.children if c.type == "test_operator"), "")
        operand = node.children[-1] if node.child_count else None
        if op in ("-v", "-R") and operand is not None and not _plain_name(words.literal(operand)):
            walk.unread.append(escapes.NAME_AT_RUN_TIME)
    elif kind == "subscript":
        index = [c for c in node.children if c.type not in ("variable_name", "[", "]")]
        if any(words.text(c) not in ("@", "*") and _evaluates(c) for c in index):
            walk.unread.append(escapes.ARITHMETIC)
    elif kind == "array":
        # ([index]=value): an indexed array's index is arithmetic.
        for child in node.children:
            found = _ARRAY_INDEX.match(words.text(child))
            if found and not _NUMBER.match(found.group(1).strip()):
                walk.unread.append(escapes.ARITHMETIC)
                break
    elif kind == "expansion":
        types = [c.type for c in node.children]
        if "@" in types and types[types.index("@") + 1 : types.index("@") + 2] == ["P"]:
            walk.unread.append(escapes.PROMPT)
        elif types[:2] == ["${", "!"] and not any(t in ("*", "@") for t in types[3:]) and not _keys(node):
            walk.unread.append(escapes.INDIRECT)


def _in_double_brackets(node: tree_sitter.Node) -> bool:
    """Whether ``node`` is an expression of ``[[ … ]]``, where -eq and the
    rest evaluate arithmetic (``[ … ]`` and ``test`` only read numbers)."""
    up = node.parent
    while up is not None and up.type in ("binary_expression", "unary_expression", "parenthesized_expression"):
        up = up.parent
    return up is not None and up.type == "test_command" and up.child_count > 0 and up.children[0].type == "[["


def _expands(body: tree_sitter.Node) -> bool:
    """Whether a here-document's body is expanded (its delimiter unquoted)."""
    start = next((c for c in body.parent.children if c.type == "heredoc_start"), None) if body.parent else None
    return start is None or not any(q in words.text(start) for q in "'\"\\")


def _names_something(expression: str) -> bool:
    """Whether arithmetic text reads a variable or an expansion."""
    return any(c.isalpha() or c in "_$`" for c in expression.replace("0x", "").replace("0X", ""))


def _keys(node: tree_sitter.Node) -> bool:
    """``${!a[@]}``: the keys of an array, not an indirection."""
    sub = next((c for c in node.children if c.type == "subscript"), None)
    return sub is not None and any(words.text(c) in ("@", "*") for c in sub.children)


def _evaluates(node: tree_sitter.Node) -> bool:
    """Whether arithmetic in ``node`` reads a variable (whose value bash
    evaluates as arithmetic again) or an expansion; numbers and the
    special parameters are safe."""
    kind = node.type
    if kind in ("command_substitution", "process_substitution"):
        return True  # its output is evaluated as arithmetic (the command itself is walked too)
    if kind == "number":
        return False
    if kind in ("variable_name", "word"):
        value = words.text(node)
        return not _NUMBER.match(value) and value not in ("@", "*")
    if kind == "expansion" and node.child_count > 1 and node.children[1].type == "#":
        return False  # a length (${#x}) is a number; a subscript in it is checked by itself
    if kind in ("simple_expansion", "expansion"):
        name = next((c for c in node.children if c.type in ("variable_name", "special_variable_name")), None)
        return name is None or words.text(name) not in _SPECIAL or node.child_count > 3
    if kind in ("string", "raw_string", "concatenation"):
        lit = words.literal(node)
        return lit is None or not _NUMBER.match(lit.strip())
    return any(_evaluates(c) for c in node.children)


def _plain_name(name: str | None) -> bool:
    """A literal variable name without a subscript bash would evaluate."""
    if name is None:
        return False
    rest = name.partition("[")[2]
    return not rest or rest[:-1] in ("@", "*") or bool(_NUMBER.match(rest[:-1]))


def _assignment(node: tree_sitter.Node, walk: _Walk, depth: int, carrier: list[str] | None) -> None:
    """An assignment of a variable programs read and run (:mod:`.escapes`):
    code the gate does not read is unread; a literal command is read as
    one, and its carrier (``carrier``) does more than its words."""
    name = node.child_by_field_name("name")
    if name is None or name.type != "variable_name":
        return
    value_node = node.child_by_field_name("value")
    value = words.literal(value_node) if value_node is not None else ""
    _escape(escapes.assignment(words.text(name), value), walk, depth, carrier, words.word(node))


def _escape(
    found: escapes.Escape | None, walk: _Walk, depth: int, carrier: list[str] | None, shown: str | None = None
) -> None:
    if found is None:
        return
    if found.kind == "runs":
        walk.unread.append(found.why)
    else:
        if carrier is not None:
            carrier.append(found.why)
        if found.command is not None:
            _source(found.command, walk, depth + 1)
    if shown is not None:
        # Deny and ask rules still see the assignment itself (``PATH=*``).
        walk.units.append(Unit(shown, None, found.why))


def _declaration(node: tree_sitter.Node, walk: _Walk, depth: int) -> None:
    """``export``, ``declare``, ``local``, ``readonly``, ``typeset``,
    ``unset``: a unit of its own, its assignments checked like prefixes."""
    why: list[str] = []
    keyword = words.text(node.children[0])
    for child in node.children[1:]:
        if child.type == "variable_assignment":
            _assignment(child, walk, depth, why)
            continue
        lit = words.text(child) if child.type == "variable_name" else words.literal(child)
        if lit is None:
            walk.unread.append(escapes.NAME_AT_RUN_TIME)
        elif lit.startswith(("-", "+")):
            _attributes(keyword, lit, walk)
        elif not _plain_name(lit):
            walk.unread.append(escapes.ARITHMETIC)
        else:
            _escape(escapes.variable(lit), walk, depth, why)
    text = " ".join(words.word(c) for c in node.children)
    walk.units.append(Unit(text, words.text(node.children[0]), "; ".join(why) or None))


def _command(node: tree_sitter.Node, walk: _Walk, depth: int) -> None:
    name_node = node.child_by_field_name("name")
    if name_node is None:
        return
    argv = [name_node, *node.children_by_field_name("argument")]
    why: list[str] = []
    for assignment in (c for c in node.children if c.type == "variable_assignment"):
        _assignment(assignment, walk, depth, why)
    _argv([(words.literal(w), words.word(w), words.prefix(w)) for w in argv], walk, depth, why)


def _argv(argv: list[Word], walk: _Walk, depth: int, why: list[str] | None = None) -> None:
    """One simple command given as its words; ``why``: what its prefix
    assignments make it do beyond its words."""
    if not argv:
        return
    name = argv[0][0]
    if name is None or not name or words.globbing(name):
        walk.unread.append(f"a command name the gate cannot know before it runs ({argv[0][1][:60]})")
        walk.units.append(Unit(" ".join(t for _, t, _ in argv), None))
        return
    base = os.path.basename(name)
    rest = argv[1:]
    risk = list(why or ())
    for found in programs.program(base, [escapes.Arg(lit, pre) for lit, _, pre in rest]):
        _escape(found, walk, depth, risk)
    if base in ("env", "sudo", "doas"):
        for lit, _, _ in _leading_assignments(rest, _WRAPPERS[base][0]):
            var, _, value = lit.partition("=")
            _escape(escapes.assignment(var, value), walk, depth, risk)
    if base in _NAME_BUILTINS:
        _names(base, rest, walk, depth, risk)
    if base == "let" and any(lit is None or any(c.isalpha() or c == "_" for c in lit) for lit, _, _ in rest):
        walk.unread.append(escapes.ARITHMETIC)
    text = " ".join(lit if lit is not None else t for lit, t, _ in argv)
    walk.units.append(Unit(text, name, "; ".join(dict.fromkeys(risk)) or None))
    if base in _SHELLS:
        _shell_c(rest, walk, depth)
    elif base == "eval":
        if all(lit is not None for lit, _, _ in rest):
            _source(" ".join(lit or "" for lit, _, _ in rest), walk, depth + 1)
        else:
            walk.unread.append("eval of text built at run time")
    elif base == "find":
        _find_exec(rest, walk, depth)
    elif base == "watch":
        inner = _skip_options(rest, frozenset({"-n", "--interval", "-d"}), 0)
        if inner:
            if all(lit is not None for lit, _, _ in inner):
                _source(" ".join(lit or "" for lit, _, _ in inner), walk, depth + 1)
            else:
                walk.unread.append("watch of text built at run time")
    elif base in _WRAPPERS:
        value_opts, positionals = _WRAPPERS[base]
        inner = _skip_options(rest, value_opts, positionals, assignments=base in ("env", "sudo"))
        if inner:
            _argv(inner, walk, depth + 1)


def _leading_assignments(argv: list[Word], value_opts: frozenset[str]) -> list[tuple[str, str, str | None]]:
    """The ``NAME=value`` words ``env`` or ``sudo`` sets before its command
    (past its options, and the values of those that take one)."""
    out = []
    i = 0
    while i < len(argv):
        lit, text, pre = argv[i]
        if lit is None:
            break
        if lit.startswith("-"):
            i += 2 if lit in value_opts else 1
            continue
        if "=" not in lit or lit.startswith("="):
            break
        out.append((lit, text, pre))
        i += 1
    return out


def _names(base: str, argv: list[Word], walk: _Walk, depth: int, risk: list[str]) -> None:
    """The variable names a builtin is given: one only known at run time,
    or with a subscript that is not a number, runs what bash evaluates; one
    of :mod:`.escapes`' variables is set as by an assignment (``risk``:
    what the builtin then does beyond its words)."""
    name_opts, value_opts, all_names = _NAME_BUILTINS[base]
    i = 0
    while i < len(argv):
        lit = argv[i][0]
        if lit in name_opts:
            if i + 1 < len(argv) and not _plain_name(argv[i + 1][0]):
                walk.unread.append(escapes.NAME_AT_RUN_TIME)
            i += 2
            continue
        if lit in value_opts:
            i += 2
            continue
        if lit is not None and lit.startswith("-") and len(lit) > 1:
            if base in ("mapfile", "readarray") and "C" in lit:
                walk.unread.append(escapes.CALLBACK)
            _attributes(base, lit, walk)
            i += 1
            continue
        if all_names:
            name, eq, value = lit.partition("=") if lit is not None else (None, "", "")
            if not _plain_name(name):
                walk.unread.append(escapes.NAME_AT_RUN_TIME)
            elif name is not None and base in ("read", "mapfile", "readarray"):
                _escape(escapes.variable(name), walk, depth, risk)  # what it reads is only known at run time
            elif name is not None:
                _escape(escapes.assignment(name, value if eq else None), walk, depth, risk)
        i += 1


def _attributes(keyword: str, options: str, walk: _Walk) -> None:
    """``declare -i`` and ``-n`` (and ``local``, ``typeset``): each value
    given to the variable, or the name it refers to, is evaluated."""
    if keyword in ("declare", "typeset", "local", "export", "readonly") and "i" in options[1:]:
        walk.unread.append(escapes.INTEGER)
    if keyword in ("declare", "typeset", "local") and "n" in options[1:]:
        walk.unread.append(escapes.NAMEREF)


def _skip_options(
    argv: list[Word], value_opts: frozenset[str], positionals: int, assignments: bool = False
) -> list[Word]:
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


def _shell_c(argv: list[Word], walk: _Walk, depth: int) -> None:
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


def _find_exec(argv: list[Word], walk: _Walk, depth: int) -> None:
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
