"""Any OpenAI-compatible chat endpoint (OpenAI, Ollama, vLLM, llama.cpp's server).

    OpenAIModel.complete(messages, tools=, output_schema=)
        tools, native ok ──► chat.completions(tools=[...]) ──► message.tool_calls ──► ToolCall
        tools, rejected  ──► JSON mode: tools block in the system prompt (+ response_format
                             json_schema where accepted) ──► jsontools.parse_tool_choice
        output_schema    ──► response_format json_schema where accepted, else prompt; then
                             parse + validate, with one repair turn that sends the error back

Everything goes through the ``openai`` SDK's ``AsyncOpenAI``; its own bounded retries (with
backoff, honouring ``Retry-After``) cover 408/409/429/5xx and connection errors. What the
endpoint turns out not to support (``tools``, ``response_format``, ``stream_options``) is
remembered per instance, so the fallback costs one rejected request, once. SDK errors become
our errors with one line and a hint: the endpoint is down (``BackendUnavailable`` naming the
URL), the key or model name is wrong, or the model answered with something unusable
(``ModelBehaviorError``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from octopussy.errors import (
    BackendUnavailable,
    ConfigError,
    LimitExceeded,
    ModelBehaviorError,
    OctopussyError,
)
from octopussy.llm import jsontools
from octopussy.llm.base import (
    ChatMessage,
    Model,
    ModelResponse,
    ModelSettings,
    Stopwatch,
    StreamEvent,
    ToolCall,
    ToolSpec,
    Usage,
    new_call_id,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
    from openai.types.completion_usage import CompletionUsage

ToolMode = Literal["auto", "native", "json"]
Provider = Literal["openai", "ollama"]

OPENAI_DEFAULT_URL = "https://api.openai.com/v1"
OLLAMA_DEFAULT_URL = "http://localhost:11434/v1"
# The SDK insists on a key; local servers ignore it. Passing one ourselves also keeps the SDK
# from reading OPENAI_API_KEY behind the config's back (env vars are read in one place).
_NO_KEY = "no-key"

# Words in a 4xx/5xx error message that mean "this endpoint does not support that feature".
_FEATURE_WORDS: dict[str, tuple[str, ...]] = {
    "tools": ("tool",),
    "response_format": ("response_format", "json_schema", "response format", "json schema"),
    "stream_options": ("stream_options", "include_usage"),
}
_REJECTION_STATUSES = {400, 404, 422, 500, 501}
_CONTEXT_WORDS = ("context length", "context_length", "context size", "maximum context", "too long")


def normalize_base_url(base_url: str | None, provider: Provider) -> str:
    """The base URL the SDK gets: a default per provider, ``/v1`` added for Ollama."""
    if not base_url:
        return OLLAMA_DEFAULT_URL if provider == "ollama" else OPENAI_DEFAULT_URL
    url = base_url.rstrip("/")
    if provider == "ollama" and not url.endswith("/v1"):
        url += "/v1"
    return url


class _Rejected(Exception):
    """The endpoint refused a request because of one optional feature in it."""

    def __init__(self, feature: str, message: str) -> None:
        super().__init__(message)
        self.feature = feature


class OpenAIModel(Model):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``tool_mode``: "native" sends ``tools``; "json" always uses the JSON fallback; "auto"
    tries native and switches to JSON for good when the endpoint rejects ``tools``.
    ``provider`` only changes defaults and hints ("ollama": ``/v1`` appended, the local URL,
    "is Ollama running?", "ollama pull").
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tool_mode: ToolMode = "auto",
        provider: Provider = "openai",
        name: str | None = None,
    ) -> None:
        if tool_mode not in ("auto", "native", "json"):
            raise ConfigError(f"unknown tool_mode {tool_mode!r}", hint="use auto, native or json")
        if provider not in ("openai", "ollama"):
            raise ConfigError(f"unknown provider {provider!r}", hint="use openai or ollama")
        if max_retries < 0:
            raise ConfigError("max_retries must be 0 or more")
        self.model = model
        self.provider: Provider = provider
        self.base_url = normalize_base_url(base_url, provider)
        self.api_key = api_key or ("ollama" if provider == "ollama" else _NO_KEY)
        self.timeout = timeout
        self.max_retries = max_retries
        self.tool_mode: ToolMode = tool_mode
        self.defaults = ModelSettings(
            temperature=temperature, max_tokens=max_tokens, timeout=timeout
        )
        self.name = name or f"{provider}:{model}"
        self._client: AsyncOpenAI | None = None
        # What the endpoint accepts; None = not tried yet. Learned once per instance.
        self._supports: dict[str, bool] = {}

    # ------------------------------------------------------------------ lifecycle

    def _get_client(self) -> AsyncOpenAI:
        if self._client is None:
            from openai import AsyncOpenAI  # the SDK is heavy: import it on first use

            self._client = AsyncOpenAI(
                api_key=self.api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    @property
    def native_tools(self) -> bool:
        """Whether the next call with tools will send them natively."""
        if self.tool_mode == "json":
            return False
        return self._supports.get("tools", True)

    # ------------------------------------------------------------------ complete

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        output_schema: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> ModelResponse:
        merged = self.defaults.merged(settings)
        watch = Stopwatch()
        usage = Usage()
        response: ModelResponse | None = None
        while tools and self.native_tools and response is None:
            try:
                response = await self._complete_native(
                    messages, tools, output_schema, merged, usage
                )
            except _Rejected as exc:
                if exc.feature == "tools":
                    self._forget_native_tools(exc)
                else:  # response_format next to tools: drop it and ask again
                    self._supports[exc.feature] = False
        if response is None:
            if tools:
                response = await self._complete_json_tools(
                    messages, tools, output_schema, merged, usage
                )
            elif output_schema is not None:
                response = await self._complete_structured(messages, output_schema, merged, usage)
            else:
                response = await self._complete_plain(messages, merged, usage)
        usage.seconds = watch.elapsed()
        response.usage = usage
        response.model = response.model or self.model
        return response

    def _forget_native_tools(self, exc: _Rejected) -> None:
        if self.tool_mode == "native":
            raise ConfigError(
                f"{self.base_url} rejected native tool calls for model {self.model!r}: {exc}",
                hint="set tool_mode: json (or auto) for this model",
            )
        self._supports["tools"] = False

    async def _complete_plain(
        self, messages: Sequence[ChatMessage], settings: ModelSettings, usage: Usage
    ) -> ModelResponse:
        completion = await self._create(_wire_messages(messages), settings, usage)
        text, _calls, finish = _first_choice(completion)
        if not text.strip():
            raise ModelBehaviorError("the model returned an empty reply", raw=text)
        return ModelResponse(text=text, model=completion.model, finish_reason=finish)

    async def _complete_native(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec],
        output_schema: dict[str, Any] | None,
        settings: ModelSettings,
        usage: Usage,
    ) -> ModelResponse:
        wire = _wire_messages(messages)
        extra: dict[str, Any] = {"tools": _wire_tools(tools)}
        if output_schema is not None and self._supports.get("response_format", True):
            extra["response_format"] = _response_format(output_schema)
        known = {tool.name for tool in tools}
        for attempt in (1, 2):
            completion = await self._create(wire, settings, usage, **extra)
            text, raw_calls, finish = _first_choice(completion)
            try:
                calls = _parse_native_calls(raw_calls, known)
                if not calls:
                    if not text.strip():
                        raise ModelBehaviorError("the model returned an empty reply", raw=text)
                    data = None
                    if output_schema is not None:
                        data = jsontools.parse_structured(text, output_schema)
                    return ModelResponse(
                        text=text, model=completion.model, finish_reason=finish, data=data
                    )
                return ModelResponse(
                    text=text, tool_calls=calls, model=completion.model, finish_reason=finish
                )
            except ModelBehaviorError as exc:
                if attempt == 2:
                    raise
                # Replay the bad turn as plain text: an assistant turn carrying broken
                # tool_calls would itself be rejected by strict endpoints.
                shown = text or json.dumps(raw_calls, ensure_ascii=False)
                wire = [
                    *wire,
                    {"role": "assistant", "content": shown},
                    {"role": "user", "content": jsontools.repair_prompt(exc.message)},
                ]
        raise AssertionError("unreachable")  # pragma: no cover

    async def _complete_json_tools(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec],
        output_schema: dict[str, Any] | None,
        settings: ModelSettings,
        usage: Usage,
    ) -> ModelResponse:
        last = bool(settings.prefer_tools)
        schema = jsontools.tool_choice_schema(tools, answer=output_schema, answer_last=last)
        prompt = jsontools.with_system_block(
            jsontools.as_json_mode_messages(messages),
            jsontools.tools_prompt(tools, answer_last=last),
        )
        return await self._json_exchange(
            prompt,
            schema,
            settings,
            usage,
            lambda text: jsontools.parse_tool_choice(text, tools, answer=output_schema),
        )

    async def _complete_structured(
        self,
        messages: Sequence[ChatMessage],
        output_schema: dict[str, Any],
        settings: ModelSettings,
        usage: Usage,
    ) -> ModelResponse:
        prompt = jsontools.with_system_block(
            jsontools.as_json_mode_messages(messages), jsontools.schema_prompt(output_schema)
        )

        def parse(text: str) -> ModelResponse:
            return ModelResponse(text=text, data=jsontools.parse_structured(text, output_schema))

        return await self._json_exchange(prompt, output_schema, settings, usage, parse)

    async def _json_exchange(
        self,
        messages: list[ChatMessage],
        schema: dict[str, Any],
        settings: ModelSettings,
        usage: Usage,
        parse: Callable[[str], ModelResponse],
    ) -> ModelResponse:
        """Ask for JSON (schema-constrained where accepted), parse, repair once."""
        wire = _wire_messages(messages)
        for attempt in (1, 2):
            completion = await self._create_json(wire, schema, settings, usage)
            text, _calls, finish = _first_choice(completion)
            try:
                response = parse(text)
            except ModelBehaviorError as exc:
                if attempt == 2:
                    raise
                wire = [
                    *wire,
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": jsontools.repair_prompt(exc.message)},
                ]
                continue
            response.model = completion.model
            response.finish_reason = finish
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _create_json(
        self,
        wire: list[dict[str, Any]],
        schema: dict[str, Any],
        settings: ModelSettings,
        usage: Usage,
    ) -> ChatCompletion:
        if self._supports.get("response_format", True):
            try:
                return await self._create(
                    wire, settings, usage, response_format=_response_format(schema)
                )
            except _Rejected as exc:
                self._supports[exc.feature] = False
        return await self._create(wire, settings, usage)

    # ------------------------------------------------------------------ the wire

    async def _create(
        self,
        wire: list[dict[str, Any]],
        settings: ModelSettings,
        usage: Usage,
        **extra: Any,
    ) -> ChatCompletion:
        """One non-streaming request; errors translated, usage added."""
        from openai import OpenAIError
        from openai.types.chat import ChatCompletion

        client = self._get_client()
        try:
            completion: Any = await client.chat.completions.create(
                model=self.model,
                messages=cast(Any, wire),
                **self._sampling(settings),
                **extra,
            )
        except OpenAIError as exc:
            raise self._translate(exc, features=extra) from exc
        usage.requests += 1
        if not isinstance(completion, ChatCompletion):
            raise BackendUnavailable(
                f"{self.base_url} did not answer like an OpenAI-compatible endpoint",
                url=self.base_url,
                hint="check base_url; it usually ends with /v1",
            )
        _add_usage(usage, completion.usage)
        return completion

    def _sampling(self, settings: ModelSettings) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if settings.temperature is not None:
            kwargs["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            kwargs["max_tokens"] = settings.max_tokens
        if settings.timeout is not None:
            kwargs["timeout"] = settings.timeout
        return kwargs

    def _translate(self, exc: Exception, *, features: dict[str, Any]) -> Exception:
        """An SDK exception as ``_Rejected`` (a feature to drop) or one of our errors."""
        from openai import (
            APIConnectionError,
            APIStatusError,
            APITimeoutError,
            AuthenticationError,
            NotFoundError,
            PermissionDeniedError,
            RateLimitError,
        )

        url = self.base_url
        detail = _error_detail(exc)
        if isinstance(exc, APIStatusError) and exc.status_code in _REJECTION_STATUSES:
            lowered = detail.lower()
            for feature in features:
                words = _FEATURE_WORDS.get(feature, ())
                if any(word in lowered for word in words):
                    return _Rejected(feature, detail)
        if isinstance(exc, APITimeoutError):
            return BackendUnavailable(
                f"model endpoint {url} did not answer within {self.timeout:g}s",
                url=url,
                hint=self._down_hint(),
            )
        if isinstance(exc, APIConnectionError):
            return BackendUnavailable(
                f"cannot reach model endpoint {url}: {_connection_reason(exc)}",
                url=url,
                hint=self._down_hint(),
            )
        if isinstance(exc, AuthenticationError | PermissionDeniedError):
            return BackendUnavailable(
                f"{url} refused the API key (HTTP {exc.status_code}): {detail}",
                url=url,
                hint="check api_key in the llm config (e.g. api_key: ${OPENAI_API_KEY})",
            )
        if isinstance(exc, NotFoundError):
            if self.provider == "ollama" or ":11434" in url:
                hint = f"try `ollama pull {self.model}`, or check the model name"
            else:
                hint = "check the model name and that base_url ends with /v1"
            return BackendUnavailable(
                f"model {self.model!r} not found at {url}: {detail}", url=url, hint=hint
            )
        if isinstance(exc, RateLimitError):
            return BackendUnavailable(
                f"{url} is rate limiting us (HTTP 429) after {self.max_retries} retries: {detail}",
                url=url,
                hint="wait a little, lower concurrency, or raise max_retries",
            )
        if isinstance(exc, APIStatusError):
            if exc.status_code in (400, 413, 422) and any(
                word in detail.lower() for word in _CONTEXT_WORDS
            ):
                return LimitExceeded(
                    f"the conversation is too long for model {self.model!r}: {detail}",
                    hint="start a new conversation or use a model with a larger context",
                )
            if exc.status_code >= 500:
                return BackendUnavailable(
                    f"{url} failed with HTTP {exc.status_code} after {self.max_retries} "
                    f"retries: {detail}",
                    url=url,
                )
            return ConfigError(
                f"{url} rejected the request for model {self.model!r} "
                f"(HTTP {exc.status_code}): {detail}",
                hint="check this model's settings (tool_mode, max_tokens) in the llm config",
            )
        return OctopussyError(f"model endpoint {url} failed: {detail}")

    def _down_hint(self) -> str:
        if self.provider == "ollama" or ":11434" in self.base_url:
            return "is Ollama running? try `ollama serve`"
        return "is the server running? check base_url"

    # ------------------------------------------------------------------ stream

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        output_schema: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream text deltas; JSON-mode and structured calls arrive as one piece."""
        if output_schema is not None or (tools and not self.native_tools):
            async for event in super().stream(
                messages, tools=tools, output_schema=output_schema, settings=settings
            ):
                yield event
            return
        merged = self.defaults.merged(settings)
        watch = Stopwatch()
        usage = Usage()
        extra: dict[str, Any] = {}
        if tools:
            extra["tools"] = _wire_tools(tools)
        try:
            chunks = await self._open_stream(_wire_messages(messages), merged, usage, extra)
        except _Rejected as exc:
            # Only "tools" reaches here (stream_options is handled in _open_stream).
            self._forget_native_tools(exc)
            async for event in super().stream(
                messages, tools=tools, output_schema=output_schema, settings=settings
            ):
                yield event
            return
        parts: list[str] = []
        pending: dict[int, dict[str, str]] = {}
        finish: str | None = None
        model_name = self.model
        try:
            async for chunk in chunks:
                model_name = chunk.model or model_name
                _add_usage(usage, chunk.usage)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finish = choice.finish_reason or finish
                delta = choice.delta
                for fragment in delta.tool_calls or ():
                    slot = pending.setdefault(fragment.index, {"id": "", "name": "", "args": ""})
                    if fragment.id:
                        slot["id"] = fragment.id
                    if fragment.function is not None:
                        slot["name"] += fragment.function.name or ""
                        slot["args"] += fragment.function.arguments or ""
                if delta.content:
                    parts.append(delta.content)
                    yield StreamEvent("delta", delta.content)
        except _StreamFailure as failure:
            raise failure.error from failure.__cause__
        finally:
            await chunks.aclose()
        text = "".join(parts)
        calls = _parse_native_calls(
            [(slot["id"], slot["name"], slot["args"]) for _, slot in sorted(pending.items())],
            {tool.name for tool in tools},
        )
        if not calls and not text.strip():
            raise ModelBehaviorError("the model returned an empty reply", raw=text)
        usage.requests = 1
        usage.seconds = watch.elapsed()
        response = ModelResponse(
            text=text, tool_calls=calls, usage=usage, model=model_name, finish_reason=finish
        )
        yield StreamEvent("done", response=response)

    async def _open_stream(
        self,
        wire: list[dict[str, Any]],
        settings: ModelSettings,
        usage: Usage,
        extra: dict[str, Any],
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        """Start a streaming request; drop ``stream_options`` once if the endpoint refuses it."""
        from openai import OpenAIError

        client = self._get_client()
        while True:
            request = dict(extra)
            if self._supports.get("stream_options", True):
                request["stream_options"] = {"include_usage": True}
            try:
                stream = await client.chat.completions.create(
                    model=self.model,
                    messages=cast(Any, wire),
                    stream=True,
                    **self._sampling(settings),
                    **request,
                )
            except OpenAIError as exc:
                error = self._translate(exc, features=request)
                if isinstance(error, _Rejected) and error.feature == "stream_options":
                    self._supports["stream_options"] = False
                    continue
                raise error from exc
            return self._chunks(stream)

    async def _chunks(self, stream: Any) -> AsyncGenerator[ChatCompletionChunk, None]:
        from openai import OpenAIError

        try:
            async for chunk in stream:
                yield chunk
        except OpenAIError as exc:
            raise _StreamFailure(self._translate(exc, features={})) from exc
        finally:
            await stream.close()


class _StreamFailure(Exception):
    """Carries a translated error out of the chunk iterator (kept apart from _Rejected)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


# ---------------------------------------------------------------------- conversions


def _wire_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            wire.append(
                {
                    "role": "tool",
                    "tool_call_id": message.tool_call_id or "",
                    "content": message.content,
                }
            )
        elif message.role == "assistant" and message.tool_calls:
            wire.append(
                {
                    "role": "assistant",
                    "content": message.content or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": json.dumps(call.arguments, ensure_ascii=False),
                            },
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        else:
            wire.append({"role": message.role, "content": message.content})
    return wire


def _wire_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
    ]


def _response_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}


def _first_choice(
    completion: ChatCompletion,
) -> tuple[str, list[tuple[str, str, str]], str | None]:
    """Text, raw tool calls (id, name, arguments JSON) and finish reason of choice 0."""
    if not completion.choices:
        raise ModelBehaviorError("the endpoint returned no choices", raw=None)
    choice = completion.choices[0]
    message = choice.message
    calls: list[tuple[str, str, str]] = []
    for call in message.tool_calls or ():
        function = getattr(call, "function", None)
        if function is None:  # a "custom" tool call: we never offer those
            continue
        calls.append((call.id, function.name, function.arguments))
    return message.content or "", calls, choice.finish_reason


def _parse_native_calls(raw: Sequence[tuple[str, str, str]], known: set[str]) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for call_id, name, arguments in raw:
        if name not in known:
            raise ModelBehaviorError(
                f"the model called an unknown tool {name!r} (known: {', '.join(sorted(known))})",
                raw=json.dumps({"name": name, "arguments": arguments}),
            )
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ModelBehaviorError(
                f"the arguments of {name!r} are not valid JSON ({exc.msg}): "
                f"{jsontools.preview(arguments, 80)!r}",
                raw=arguments,
            ) from None
        if not isinstance(parsed, dict):
            raise ModelBehaviorError(
                f"the arguments of {name!r} are not a JSON object", raw=arguments
            )
        calls.append(ToolCall(name, parsed, call_id or new_call_id()))
    return calls


def _add_usage(usage: Usage, reported: CompletionUsage | None) -> None:
    if reported is None:
        return
    usage.input_tokens += reported.prompt_tokens or 0
    usage.output_tokens += reported.completion_tokens or 0


def _error_detail(exc: Exception) -> str:
    """The server's own error message, on one line."""
    body = getattr(exc, "body", None)
    message: Any = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
    if not isinstance(message, str) or not message.strip():
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return jsontools.preview(str(message), 200)


def _connection_reason(exc: Exception) -> str:
    """Why the connection failed, from the exception chain (httpx wraps the OS error)."""
    import socket

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "unknown host"
        if isinstance(cause, TimeoutError):
            return "connection timed out"
        cause = cause.__cause__ or cause.__context__
    return "connection failed"
