"""Who may act: the settings' syntax, user groups read from the fake Slack
(cached, and refused when they cannot be read), a channel's own list."""

from __future__ import annotations

import pytest
from slack_support import run
from tests.fakes.slack_api import FakeSlack

from spanvisor_slack.interact import Where
from spanvisor_slack.settings import p_app_token, p_approvers, p_channel_approvers
from spanvisor_slack.webapi import Approvers, InteractApi


def test_settings_syntax() -> None:
    assert p_approvers("U012AB, @oncall S0ABC W0X1") == ("U012AB", "@oncall", "S0ABC", "W0X1")
    assert p_approvers(["U012AB", "U012AB"]) == ("U012AB",)
    for bad in ("bob", "<@U012>", "@", "C0123"):
        with pytest.raises(ValueError):
            p_approvers(bad)
    assert p_channel_approvers("#ops=U012 @oncall, C0123=S0ABC") == {"#ops": ("U012", "@oncall"), "C0123": ("S0ABC",)}
    assert p_channel_approvers({"#ops": ["U012"]}) == {"#ops": ("U012",)}
    with pytest.raises(ValueError):
        p_channel_approvers("#ops=")
    assert p_app_token("xapp-1-A-1-x") == "xapp-1-A-1-x"
    with pytest.raises(ValueError):
        p_app_token("xoxb-not-an-app-token")


def test_groups_are_read_cached_and_fail_closed() -> None:
    async def go() -> None:
        fake = FakeSlack()
        await fake.start()
        fake.interactions.groups["S0ONCALL"] = ("oncall", ["U0CAROL"])
        fake.interactions.groups["S0DBA"] = ("dba", ["U0DAN"])
        now = [0.0]
        api = InteractApi("xoxb-test", fake.base_url, 5.0)
        nogroups = InteractApi("xoxb-nogroups", fake.base_url, 5.0)
        try:
            who = Approvers(("U0ALICE", "@oncall", "S0DBA"), {"#ops": ("U0OPS",)}, api, 60.0, lambda: now[0])
            assert await who.allows(Where("U0ALICE", "C0AGENTS", "agents")) == (True, None)
            assert await who.allows(Where("U0CAROL", "C0AGENTS", "agents")) == (True, None)
            assert await who.allows(Where("U0DAN", "C0AGENTS", "agents")) == (True, None)
            assert await who.allows(Where("U0EVE", "C0AGENTS", "agents")) == (False, "not an approver")
            reads = len(fake.calls_to("usergroups.users.list"))
            fake.interactions.groups["S0ONCALL"] = ("oncall", ["U0CAROL", "U0EVE"])
            assert (await who.allows(Where("U0EVE", "C0AGENTS", "agents")))[0] is False  # cached
            assert len(fake.calls_to("usergroups.users.list")) == reads
            now[0] = 61.0
            assert (await who.allows(Where("U0EVE", "C0AGENTS", "agents")))[0] is True  # read again after the TTL
            # A channel's own list replaces the global one there (by ID or #name).
            assert (await who.allows(Where("U0ALICE", "C0OPS", "ops")))[0] is False
            assert (await who.allows(Where("U0OPS", "C0OPS", "ops")))[0] is True
            # Groups that cannot be read admit no one, and the refusal says why.
            closed = Approvers(("@oncall",), {}, nogroups, 60.0)
            assert await closed.allows(Where("U0CAROL")) == (False, "an approvers group could not be read")
            # Nobody configured: anyone.
            anyone = Approvers((), {}, api)
            assert not anyone.configured and await anyone.allows(Where("U0ANY")) == (True, None)
        finally:
            await api.close()
            await nogroups.close()
            await fake.stop()

    run(go())
