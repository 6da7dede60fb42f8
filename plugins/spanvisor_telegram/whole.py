"""A request whole, for the 'Show all' button: the message shows a long
question, its details and its action cut (the action's start and end);
this posts all of it, the action masked, as replies under the message,
once per request however often it is pressed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from spanvisor.chat.buttons import Button
from spanvisor.chat.claims import Claims
from spanvisor.chat.pacing import PERSON
from spanvisor.control.hub import Control
from spanvisor.control.runs import request_from_dict

from .limits import Poster
from .record import REPLIES
from .render import pieces, whole_request

# At most this many replies, each this much escaped text (4,096 less the
# heading, the tags and the last one's pointer to the CLI).
PIECES, ROOM = 4, 3900


class WholeAction:
    def __init__(self, poster: Poster, claims: Claims, control: Control, end: Callable[[], float | None]) -> None:
        self.poster, self.claims, self.control, self.end = poster, claims, control, end
        self._showing: set[str] = set()  # a second press while the first posts (claims are per process)

    async def show(self, button: Button, message: Mapping[str, Any]) -> bool:
        """Post the action of ``button``'s request, as the control log holds it
        (only while its digest is the one the button was made for); False
        when it could not be shown."""
        record = await self.control.run(button.task_id, button.run_id or None)
        requests = record.get("requests") if record is not None else None
        req = request_from_dict(requests.get(button.approval_id)) if isinstance(requests, Mapping) else None
        message_id = message.get("message_id")
        if req is None or req.digest != button.digest or not isinstance(message_id, int):
            return False
        key = f"{button.task_id}/{button.run_id}/whole/{button.approval_id}"
        if key in self._showing:
            return True
        self._showing.add(key)
        try:
            topic = message.get("message_thread_id") if message.get("is_topic_message") else None
            return await self._post(
                key, button, whole_request(req), message_id, topic if isinstance(topic, int) else None
            )
        finally:
            self._showing.discard(key)

    async def _post(self, key: str, button: Button, whole: str, message_id: int, topic: int | None) -> bool:
        claim = await self.claims.claim(REPLIES, key)
        if claim.value is not None or not claim.won:
            return True  # shown already
        parts = pieces(whole, ROOM)
        for n, part in enumerate(parts[:PIECES], 1):
            text = f"📄 <b>Request {n} of {len(parts)}</b>\n<pre>{part}</pre>"
            if n == PIECES and len(parts) > PIECES:
                text += "\n<i>… the rest: spanvisor approvals --full</i>"
            args = {
                "text": text,
                "parse_mode": "HTML",
                "reply_parameters": {"message_id": message_id, "allow_sending_without_reply": True},
                **({"message_thread_id": topic} if topic is not None else {}),
            }
            answer = await self.poster.send("sendMessage", button.chat, args, rank=PERSON, end=self.end)
            if answer is None or not answer.ok:
                await self.claims.release(REPLIES, key)
                return False
        await self.claims.settle(REPLIES, key, {"pieces": min(len(parts), PIECES)})
        return True
