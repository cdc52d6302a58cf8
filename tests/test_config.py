"""Config loading: defaults, seed keys, interpolation, overrides and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from octopussy.config import MemorySettings, load_config, parse_config
from octopussy.errors import ConfigError

SEED_CONFIG = """
llm:
  provider: "ollama"
  coordinator_model: "llama3.2"
  worker_model: "llama3.2"
  base_url: "http://localhost:11434"
  api_key: "ollama"
coordinator:
  system_prompt: |
    You are the coordinator of an agentic AI system called Octopussy Light.
mail_agent:
  poll_interval_seconds: 60
  imap_host: "imap.example.org"
  imap_user: "me@example.org"
  imap_password: "${IMAP_PASSWORD:-secret}"
  filters:
    - field: "sender"
      pattern: "boss@company.com"
calendar_agent:
  poll_interval_seconds: 300
  notify_minutes_before: 30
  backend: "local"
  local_ics_path: "/path/to/your/calendar.ics"
  google_credentials_path: "credentials.json"
  google_token_path: "token.json"
  google_calendar_id: "primary"
mcp_servers:
  - name: "builtin"
    type: "local"
    command: ["python", "mcp_server/builtin_tools_server.py"]
"""


def parse(text: str, env: dict[str, str] | None = None) -> object:
    return parse_config(text, source="test.yaml", env=env or {})[0]


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="test.yaml", env=env or {})
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith("test.yaml")
    return line


def test_defaults_need_no_file(tmp_path: Path) -> None:
    loaded = load_config(None, env={"OCTOPUSSY_HOME": str(tmp_path / "h")}, cwd=tmp_path)
    assert loaded.source == "<defaults>"
    assert loaded.config.llm.provider == "embedded"
    coordinator = loaded.config.llm_for("coordinator")
    assert coordinator.provider == "embedded"
    assert coordinator.model == "qwen2.5-coder-1.5b-instruct"
    assert loaded.paths.home == tmp_path / "h"
    assert loaded.paths.workspace == tmp_path.resolve()
    assert loaded.paths.model_cache == tmp_path / "h" / "models"


def test_seed_config_validates() -> None:
    config, plain = parse_config(SEED_CONFIG, source="seed.yaml", env={})
    assert config.llm_for("coordinator").model == "llama3.2"
    assert config.llm_for("worker").base_url == "http://localhost:11434"
    assert config.mail_agent is not None
    assert config.mail_agent.imap_password == "secret"
    assert config.mcp_servers[0].command == ["python", "mcp_server/builtin_tools_server.py"]
    # the api_key was written literally; the password came from ${...}
    assert plain == ["llm.api_key"]


def test_interpolation_and_default() -> None:
    text = "llm:\n  provider: openai\n  model: m\n  api_key: ${KEY}\n  base_url: ${URL:-http://127.0.0.1:9/v1}\n"
    config = parse_config(text, source="t", env={"KEY": "sk-1"})[0]
    resolved = config.llm_for("coordinator")
    assert resolved.api_key == "sk-1"
    assert resolved.base_url == "http://127.0.0.1:9/v1"


def test_dollar_escape() -> None:
    config = parse_config("coordinator:\n  system_prompt: costs $$5\n", source="t", env={})[0]
    assert config.coordinator.system_prompt == "costs $5"


def test_missing_env_var_names_key_path() -> None:
    line = error_of("llm:\n  api_key: ${NOPE}\n")
    assert "llm.api_key" in line
    assert "NOPE" in line


def test_unknown_key_suggests_close_match() -> None:
    line = error_of("llm:\n  provder: openai\n")
    assert "llm.provder" in line
    assert "'provider'" in line


def test_unknown_top_level_section() -> None:
    assert "unknown key 'mail_agnet'" in error_of("mail_agnet: {}\n")


def test_wrong_type_names_path_and_value() -> None:
    line = error_of("mail_agent:\n  poll_interval_seconds: soon\n")
    assert "mail_agent.poll_interval_seconds" in line
    assert "'soon'" in line


def test_bad_enum() -> None:
    line = error_of("llm:\n  provider: olama\n")
    assert "llm.provider" in line
    assert "ollama" in line


def test_invalid_regex_filter_named() -> None:
    line = error_of("mail_agent:\n  filters:\n    - field: subject\n      pattern: '(unclosed'\n")
    assert "mail_agent.filters[0].pattern" in line
    assert "invalid regular expression" in line


def test_invalid_yaml_gives_line() -> None:
    line = error_of("llm:\n  provider: [unclosed\n")
    assert "invalid YAML" in line
    assert "line" in line


def test_top_level_must_be_mapping() -> None:
    assert "mapping" in error_of("- a\n- b\n")


def test_openai_needs_model() -> None:
    line = error_of("llm:\n  provider: openai\n  api_key: x\n")
    assert "llm.model" in line


def test_per_agent_override() -> None:
    text = (
        "llm:\n  provider: ollama\n  model: llama3.2\n"
        "coordinator:\n  llm:\n    provider: openai\n    model: gpt-4o-mini\n"
        "    base_url: http://127.0.0.1:8000/v1\n"
        "workers:\n  llm:\n    model: qwen2.5\n"
    )
    config = parse_config(text, source="t", env={})[0]
    coordinator = config.llm_for("coordinator")
    assert (coordinator.provider, coordinator.model) == ("openai", "gpt-4o-mini")
    assert coordinator.base_url == "http://127.0.0.1:8000/v1"
    worker = config.llm_for("worker")
    assert (worker.provider, worker.model, worker.base_url) == (
        "ollama",
        "qwen2.5",
        "http://localhost:11434",
    )


def test_mcp_servers_json_shape_accepted() -> None:
    text = '{"mcpServers": {"time": {"command": "uvx", "args": ["mcp-server-time"]}}}'
    config = parse_config(text, source="t", env={})[0]
    assert config.mcpServers["time"].args == ["mcp-server-time"]


def test_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml", env={}, cwd=tmp_path)


def test_config_yaml_in_cwd_is_used(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("llm:\n  provider: scripted\n")
    loaded = load_config(None, env={"OCTOPUSSY_HOME": str(tmp_path)}, cwd=tmp_path)
    assert loaded.source == str(tmp_path / "config.yaml")
    assert loaded.config.llm.provider == "scripted"


def test_two_homes_share_nothing(tmp_path: Path) -> None:
    a = load_config(None, env={"OCTOPUSSY_HOME": str(tmp_path / "a")}, cwd=tmp_path).paths
    b = load_config(None, env={"OCTOPUSSY_HOME": str(tmp_path / "b")}, cwd=tmp_path).paths
    for field in ("home", "model_cache", "log_file", "store"):
        assert not str(getattr(b, field)).startswith(str(a.home))


def test_xdg_default_home(tmp_path: Path) -> None:
    loaded = load_config(None, env={"XDG_DATA_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)
    assert loaded.paths.home == tmp_path / "xdg" / "octopussy"


def test_example_config_validates() -> None:
    example = Path(__file__).resolve().parents[1] / "config.example.yaml"
    config, _ = parse_config(example.read_text(), source=str(example), env={})
    assert config.llm.provider == "embedded"
    assert config.llm.embedded.n_ctx == 4096
    assert config.memory == MemorySettings()  # every memory key, at its default
    assert config.workers.role == "worker"
