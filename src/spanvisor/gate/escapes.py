"""What an allow rule does not allow: the forms by which a simple command
does more than its words say.

An allow rule such as ``git *`` or ``find *`` is written for what those
programs usually do: read. But many programs run code, or write files,
when given one option (``git -c core.pager='sh -c …' log``, ``git diff
--output=~/.bashrc``, ``find -delete``, ``sed 'e …'``, ``tar
--to-command=…``), or when the environment names a program or a library
for them (``GIT_SSH_COMMAND=…``, ``LD_PRELOAD=…``, ``PAGER=…``). A team
that allowed ``git *`` did not mean to allow ``git`` to run anything. So
an allow rule allows a simple command only when it is literal enough to be
read, and none of the forms in this table is: a call that uses one is at
least asked about, never allowed. This is the one table of them (the
shell's own forms, such as arithmetic, are found by :mod:`.shell`, which
takes their reasons from here). It is a deny-list of the forms known to
escape (GTFOBins-style knowledge of the programs people allow most), kept
here so that it can be maintained in one place.

Two kinds, because they need different answers:

* ``runs``: the command runs code the gate does not read (a config value,
  a library, a sed or awk program's ``e``/``system``, arithmetic that
  evaluates ``a[$(…)]``). It could be any command, so it is decided as an
  unreadable command: as strictly as the strictest rule that could match
  any command (:meth:`spanvisor.gate.policy.Policy.decide`).
* ``does``: the command does more than its words, but the gate can say
  what (it writes a named file, deletes files, runs a command the gate
  reads but with arguments only known at run time, runs the package's
  own scripts): an allow becomes an ask; deny and ask rules apply as usual.

Where the code an option or variable runs is a literal shell command
(``GIT_PAGER=cat``, ``rsync -e ssh``), it is read as one (``command``):
its own simple commands are decided too, and the carrier is ``does``.

The programs' checks, one per program, are in :mod:`.programs`; this module
holds what they and the shell's forms share: the kinds, the reasons and the
environment's table.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Kind = Literal["runs", "does"]

# Reasons for the shell's own forms, found by :mod:`.shell`.
ARITHMETIC = (
    "arithmetic evaluates a variable's value as an expression, and a[$(…)] in it runs a command "
    "($((x)), $[x], ((x)), for ((…)), [[ x -eq y ]], let, a[$i], ${s:$n})"
)
INDIRECT = "an indirect expansion (${!x}) evaluates the name it reads, and a[$(…)] in it runs a command"
PROMPT = "a prompt expansion (${x@P}) runs the command substitutions in the variable's value"
NAME_AT_RUN_TIME = "a variable name only known at run time (bash evaluates a[$(…)] in it)"
CALLBACK = "mapfile -C runs the callback it is given"
NAMEREF = "a name reference (declare -n) evaluates the name it holds, and a[$(…)] in it runs a command"
INTEGER = "an integer variable (declare -i) evaluates every value assigned to it as arithmetic"


# Immutable records as NamedTuples, as in the rest of the gate: a frozen
# dataclass would import dataclasses and inspect (about 6 ms) on the cold
# path of every hook call.
class Escape(NamedTuple):
    """One way a command does more than its words: ``kind`` (``runs``:
    code the gate does not read; ``does``: more than its words, known),
    why, in words a person reads, and the literal shell command it runs,
    when there is one (read as a command of its own)."""

    kind: Kind
    why: str
    command: str | None = None


class Arg(NamedTuple):
    """One argument: its value when literal; else the literal text it
    certainly starts with as one word (``"--message=$x"``), or None when
    an expansion may split it into words or start it (it may be any option)."""

    literal: str | None
    prefix: str | None = None

    @property
    def start(self) -> str | None:
        """What the argument is known to start with, as one word."""
        return self.literal if self.literal is not None else self.prefix


# --- the environment ----------------------------------------------------------

# Variables whose value is a command line a program runs (read as one when literal).
_COMMAND_VARS = frozenset(
    {
        "GIT_SSH_COMMAND",
        "GIT_SSH",
        "GIT_PAGER",
        "GIT_EDITOR",
        "GIT_SEQUENCE_EDITOR",
        "GIT_EXTERNAL_DIFF",
        "GIT_ASKPASS",
        "GIT_PROXY_COMMAND",
        "SSH_ASKPASS",
        "SUDO_ASKPASS",
        "PAGER",
        "MANPAGER",
        "SYSTEMD_PAGER",
        "EDITOR",
        "VISUAL",
        "FCEDIT",
        "BROWSER",
        "RSYNC_RSH",
        "CVS_RSH",
        "LESSOPEN",
        "LESSCLOSE",
        "PROMPT_COMMAND",
        "SHELL",
        "CC",
        "CXX",
    }
)
# Variables whose value makes a program load or run code the gate cannot read.
_CODE_VARS = frozenset(
    {
        # (IFS, CDPATH and GLOBIGNORE change how words split, where cd goes
        # and what a glob matches, never what runs: not here, so the
        # everyday `while IFS= read -r line` stays readable.)
        "PATH",
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS0",
        "PS1",
        "PS2",
        "PS3",
        "PS4",
        "HOME",  # ~/.gitconfig, ~/.bashrc and the rest are read from it
        "XDG_CONFIG_HOME",
        "ZDOTDIR",
        "PYTHONSTARTUP",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONBREAKPOINT",
        "PYTHONINSPECT",
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "PERL5DB",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "CLASSPATH",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_EXEC_PATH",
        "GIT_TEMPLATE_DIR",
        "GIT_DIR",
        "GCONV_PATH",
        "GLIBC_TUNABLES",
        "OPENSSL_CONF",
        "VIMINIT",
        "EXINIT",
        "TAR_OPTIONS",
        "LESSKEY",
    }
)
# Prefixes of such variables (GIT_CONFIG_KEY_0, LD_PRELOAD, BASH_FUNC_ls%%, npm_config_script_shell).
_CODE_PREFIXES = ("LD_", "DYLD_", "GIT_CONFIG_", "BASH_FUNC_", "npm_config_", "NPM_CONFIG_", "PIP_")


def variable(name: str) -> Escape | None:
    """Why assigning ``name`` (``NAME=… cmd``, ``export NAME=…``, ``env
    NAME=… cmd``) changes what a program runs; None when it does not."""
    if name in _COMMAND_VARS:
        return Escape("runs", f"{name} names a command a program runs")
    if name in _CODE_VARS or name.startswith(_CODE_PREFIXES):
        return Escape("runs", f"{name} makes programs load or run code the gate does not read")
    return None


def assignment(name: str, value: str | None) -> Escape | None:
    """An assignment's escape: a literal command in a command variable is
    read as a command (the assignment then does more than its words);
    anything else in the table runs code the gate does not read."""
    found = variable(name)
    if found is None:
        return None
    if name in _COMMAND_VARS and value is not None and value.strip():
        return Escape("does", found.why, value)
    return found


__all__ = [
    "ARITHMETIC",
    "CALLBACK",
    "INDIRECT",
    "INTEGER",
    "NAMEREF",
    "NAME_AT_RUN_TIME",
    "PROMPT",
    "Arg",
    "Escape",
    "Kind",
    "assignment",
    "variable",
]
