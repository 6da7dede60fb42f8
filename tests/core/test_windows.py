"""The context window a model's name is given: the built-in table (Claude
models with their true windows), Claude Code's ``[1m]`` ids, and the
user's overrides."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spanvisor.spans.windows import MODEL_CONTEXT_WINDOWS, ContextWindows

M, K200 = 1_000_000, 200_000


@pytest.mark.parametrize(
    ("model", "window"),
    [
        # Claude Code 2.1.330's default model, and the others it runs with 1M.
        ("claude-opus-5-5", M),
        ("claude-opus-5-5-20261001", M),
        ("claude-opus-5", M),
        ("claude-sonnet-5", M),
        ("claude-sonnet-5-5", M),
        ("claude-haiku-5-5", M),
        ("claude-fable-5-1", M),
        ("claude-mythos-5", M),
        ("claude-opus-4-8", M),
        ("claude-opus-4-7", M),
        ("us.anthropic.claude-opus-4-7-v1:0", M),
        ("anthropic/claude-opus-5-5", M),
        # 200k, as Claude Code runs them.
        ("claude-opus-4-6", K200),
        ("claude-sonnet-4-6", K200),
        ("claude-opus-4-5-20251101", K200),
        ("claude-sonnet-4-5", K200),
        ("claude-sonnet-4-20250514", K200),
        ("claude-opus-4-20250514", K200),
        ("claude-opus-4-1", K200),
        ("claude-haiku-4-5", K200),
        ("claude-3-7-sonnet-20250219", K200),
        ("claude-mythos-preview", K200),
        ("Claude-Opus-5-5", M),
        # Claude Code's id for a model run with the 1M window.
        ("claude-sonnet-4-5[1m]", M),
        ("claude-opus-4-6[1m]", M),
    ],
)
def test_claude_models_get_their_true_windows(model: str, window: int) -> None:
    assert ContextWindows().lookup(model) == window


def test_other_models_keep_theirs() -> None:
    w = ContextWindows()
    assert (w.lookup("gpt-4o-2024-08-06"), w.lookup("gpt-4"), w.lookup("gemini-2.5-flash")) == (
        128_000,
        8_192,
        1_048_576,
    )
    assert (w.lookup("acme-llm"), w.lookup(None), w.lookup("")) == (None, None, None)


def test_the_users_overrides_replace_extend_and_beat_the_1m_suffix() -> None:
    w = ContextWindows({"claude-opus-5-5": 500_000, "acme-llm": 32_000, "claude-sonnet-4-6": 300_000})
    assert w.lookup("claude-opus-5-5-20261001") == 500_000
    assert w.lookup("claude-opus-5") == M, "only the overridden prefix changes"
    assert w.lookup("acme-llm-7") == 32_000
    assert w.lookup("claude-sonnet-4-6[1m]") == 300_000, "the user's word over the suffix"
    assert w.lookup("claude-sonnet-4-5[1m]") == M


@given(st.sampled_from(sorted(MODEL_CONTEXT_WINDOWS)), st.text(alphabet="0123456789-", max_size=12))
def test_a_dated_or_versioned_id_gets_a_window_no_larger_than_its_longest_listed_prefix(key: str, tail: str) -> None:
    w = ContextWindows()
    name = key + tail
    longest = max((k for k in MODEL_CONTEXT_WINDOWS if name.startswith(k)), key=len)
    assert w.lookup(name) == MODEL_CONTEXT_WINDOWS[longest]
