"""spanvisor's Slack sink: one live message per task, a thread of milestones,
warnings and errors, within Slack's rate limits. See docs/reference/slack.md.

Importing this package is cheap (``Config.load()`` does it to read the
settings); slack_sdk and aiohttp are imported when the sink starts.
"""

from .sink import SlackSink

__all__ = ["SlackSink"]
