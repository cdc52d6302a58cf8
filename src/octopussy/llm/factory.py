"""Build a provider from resolved settings (``Config.llm_for(agent)``).

Providers are imported lazily: ``xllamacpp`` loads only when the embedded model is used,
the ``openai`` SDK only for endpoints.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from octopussy.config import LLMSettings, Paths, ResolvedLLM
from octopussy.errors import ConfigError
from octopussy.llm.base import Model


def _is_local(url: str | None) -> bool:
    host = urlsplit(url or "").hostname or ""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_private
    except ValueError:
        return host.endswith(".local")


def create_model(
    resolved: ResolvedLLM,
    *,
    settings: LLMSettings,
    paths: Paths,
    progress: Callable[[int, int], None] | None = None,
) -> Model:
    """A new provider instance for ``resolved`` (the runtime shares it between agents)."""
    if resolved.provider == "scripted":
        from octopussy.testing import ScriptedModel, echo_model

        if settings.script:
            return ScriptedModel(
                list(settings.script),
                name=f"scripted:{resolved.model}",
                delay=settings.script_delay,
                repeat_last=True,
            )
        return echo_model(name=f"scripted:{resolved.model}", delay=settings.script_delay)

    if resolved.provider == "embedded":
        from octopussy.llm.embedded import EmbeddedModel

        embedded = settings.embedded
        return EmbeddedModel(
            model_path=embedded.model_path,
            cache_dir=paths.model_cache,
            threads=embedded.threads,
            n_ctx=embedded.n_ctx,
            temperature=resolved.temperature,
            max_tokens=resolved.max_tokens,
            name=f"embedded:{resolved.model}",
            progress=progress,
        )

    from octopussy.llm.openai import OpenAIModel

    api_key = resolved.api_key
    if not api_key:
        if resolved.provider == "ollama" or _is_local(resolved.base_url):
            api_key = "not-needed"
        else:
            raise ConfigError(
                f"provider {resolved.provider!r} at {resolved.base_url} needs an API key",
                path="llm.api_key",
                hint="write `api_key: ${OPENAI_API_KEY}` and export the variable",
            )
    return OpenAIModel(
        model=resolved.model,
        base_url=resolved.base_url or "",
        api_key=api_key,
        timeout=resolved.timeout,
        max_retries=resolved.max_retries,
        temperature=resolved.temperature,
        max_tokens=resolved.max_tokens,
        tool_mode=resolved.tool_mode,
        provider=resolved.provider,
    )
