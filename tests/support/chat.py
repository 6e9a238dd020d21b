"""An Outbox that records what the bot would have sent, for tests of the core."""

from __future__ import annotations

from dataclasses import dataclass, field

from handlers.core.messages import ChatRef, MessageRef, Reply


@dataclass
class Sent:
    chat: ChatRef
    message_id: str
    reply: Reply
    reply_to: str | None
    edits: list[Reply] = field(default_factory=list)

    @property
    def current(self) -> Reply:
        return self.edits[-1] if self.edits else self.reply


class RecordingOutbox:
    def __init__(self) -> None:
        self.messages: list[Sent] = []
        self.fail_sends = 0

    async def send(self, chat: ChatRef, reply: Reply, reply_to: str | None = None) -> MessageRef:
        if self.fail_sends:
            self.fail_sends -= 1
            raise ConnectionError("the chat is unreachable")
        message_id = str(len(self.messages) + 1)
        self.messages.append(Sent(chat, message_id, reply, reply_to))
        return MessageRef(chat, message_id)

    async def edit(self, ref: MessageRef, reply: Reply) -> None:
        self.by_id(ref.message_id).edits.append(reply)

    def by_id(self, message_id: str) -> Sent:
        return self.messages[int(message_id) - 1]

    @property
    def last(self) -> Sent:
        return self.messages[-1]

    def texts(self) -> list[str]:
        return [sent.current.text for sent in self.messages]
