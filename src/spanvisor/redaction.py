"""What a person is shown of agent text: secrets masked, long text clipped
in the middle so both ends stay visible.

Standard library only (``re``): the gate imports it on its fast path, and
the logs, the Slack messages and the CLI all mask with the same rules.
"""

from __future__ import annotations

import re

# Slack tokens, bearer tokens, passwords in URLs, Grafana service-account tokens.
_SECRETS = (
    (re.compile(r"xox[abposr]-[A-Za-z0-9-]+"), "xox?-****"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1****"),
    # user:password@host, where the password may itself contain "@".
    (re.compile(r"(://[^:/@\s]+:)(\S+)(@[^@\s]*)"), r"\1****\3"),
    (re.compile(r"glsa_[A-Za-z0-9_]+"), "glsa_****"),
    (re.compile(r"(?i)(password\s*=\s*)[^\s&;]+"), r"\1****"),
)


def redact(text: str) -> str:
    """``text`` with every secret shape it knows masked."""
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return text


def clip_middle(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and its
    end with ``… N characters …`` between (N: what was left out), so a
    dangerous tail is never cut from what a person sees."""
    if len(text) <= limit:
        return text
    keep = max(2, limit - 30)
    head = keep * 2 // 3
    tail = keep - head
    left_out = len(text) - head - tail
    return f"{text[:head]} … {left_out} characters … {text[len(text) - tail :]}"


__all__ = ["clip_middle", "redact"]
