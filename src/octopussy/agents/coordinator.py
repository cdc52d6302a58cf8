"""The coordinator: the agent the user talks to.

    user ── chat(text) ──► Coordinator ──► model (system prompt + recent history) ──► answer
    agents ── bus ──► Coordinator.handle ──► store (event) ──► Presenter.show (REPL / serve)

It keeps the conversation (short-term memory) and shows every message other agents send it,
in the seed's formats (``octopussy.display``). A failed or cancelled model call leaves the
history as it was, so the user can simply send the same text again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from octopussy.agents.base import Agent
from octopussy.bus.base import MessageBus
from octopussy.bus.messages import Message, MessageType
from octopussy.errors import ModelBehaviorError
from octopussy.llm.base import ChatMessage, Model, ModelResponse
from octopussy.store.base import Store

COORDINATOR = "coordinator"

#: Message types the coordinator shows to the user.
SHOWN_TYPES = frozenset(
    {
        MessageType.AGENT_NOTIFICATION,
        MessageType.MAIL_NOTIFICATION,
        MessageType.CALENDAR_NOTIFICATION,
        MessageType.TASK_RESULT,
        MessageType.TASK_ERROR,
        MessageType.TASK_PROGRESS,
    }
)


class Presenter(Protocol):
    """Where the coordinator shows messages: the REPL, `serve`'s stdout, a test list."""

    async def show(self, message: Message) -> None: ...


class Coordinator(Agent):
    kind = "coordinator"

    def __init__(
        self,
        *,
        bus: MessageBus,
        model: Model,
        system_prompt: str,
        store: Store | None = None,
        presenter: Presenter | None = None,
        history_turns: int = 40,
        name: str = COORDINATOR,
    ) -> None:
        super().__init__(name, bus=bus, store=store)
        self.model = model
        self.system_prompt = system_prompt
        self.presenter = presenter
        self.history_turns = history_turns
        self.history: list[ChatMessage] = []

    # -- messages from other agents ------------------------------------------------------
    async def handle(self, message: Message) -> None:
        if message.type not in SHOWN_TYPES:
            self.log.warning("ignoring %s from %s", message.type.value, message.sender)
            return
        await self._record(message.type.value, message.to_dict(), task_id=message.task_id)
        if self.presenter is not None:
            await self.presenter.show(message)

    # -- the conversation ----------------------------------------------------------------
    def _prompt(self, text: str) -> list[ChatMessage]:
        recent = self.history[-self.history_turns :] if self.history_turns else []
        # Never start the window on an assistant turn: the model would lose the question.
        while recent and recent[0].role != "user":
            recent = recent[1:]
        return [ChatMessage.system(self.system_prompt), *recent, ChatMessage.user(text)]

    def _commit(self, text: str, answer: str) -> None:
        self.history.append(ChatMessage.user(text))
        self.history.append(ChatMessage.assistant(answer))

    @staticmethod
    def _checked(response: ModelResponse) -> str:
        answer = response.text.strip()
        if not answer:
            raise ModelBehaviorError(
                "the model returned an empty answer",
                raw=response.text,
                hint="send it again or rephrase; `octopussy doctor` checks the model",
            )
        return answer

    async def chat(self, text: str) -> str:
        """Answer one user message (the whole answer at once)."""
        self.log.debug("user said: %s", text)
        response = await self.model.complete(self._prompt(text))
        answer = self._checked(response)
        self._commit(text, answer)
        return answer

    async def chat_stream(self, text: str) -> AsyncIterator[str]:
        """Answer one user message, yielding text as it is generated.

        The turn enters the history only when the stream completes; an error or a
        cancellation (Ctrl-C) leaves the history untouched.
        """
        self.log.debug("user said: %s", text)
        final: ModelResponse | None = None
        async for event in self.model.stream(self._prompt(text)):
            if event.kind == "delta":
                yield event.text
            else:
                final = event.response
        if final is None:
            raise ModelBehaviorError("the model stream ended without an answer")
        self._commit(text, self._checked(final))

    def reset(self) -> None:
        """Forget the conversation (REPL ``/reset``)."""
        self.history.clear()
