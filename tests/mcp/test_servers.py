"""server_specs: both config shapes, the built-in server, env filtering and naming errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from octopussy.config import LoadedConfig, load_config
from octopussy.errors import ConfigError
from octopussy.mcp.servers import BUILTIN_NAME, ServerSpec, inherited_env, server_specs

PARENT_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/me",
    "LANG": "C.UTF-8",
    "OPENAI_API_KEY": "sk-secret",
    "IMAP_PASSWORD": "hunter2",
    "OCTOPUSSY_HOME": "/data/octo",
    "TOKEN": "t0k3n",
}
BUILTIN_CMD = [sys.executable, "-m", "octopussy", "mcp", "serve-builtin"]


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> LoadedConfig:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env=env if env is not None else PARENT_ENV, cwd=tmp_path)


def specs_of(tmp_path: Path, text: str, *, builtin: bool = False) -> list[ServerSpec]:
    return server_specs(load(tmp_path, text), builtin_command=BUILTIN_CMD if builtin else None)


def by_name(specs: list[ServerSpec]) -> dict[str, ServerSpec]:
    return {spec.name: spec for spec in specs}


def config_error(tmp_path: Path, text: str, *, builtin: bool = False) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        specs_of(tmp_path, text, builtin=builtin)
    assert "\n" not in str(info.value)
    return info.value


def test_no_servers_and_no_builtin_command_is_empty(tmp_path: Path) -> None:
    assert specs_of(tmp_path, "llm: {provider: scripted}\n") == []


def test_builtin_comes_first_with_our_settings(tmp_path: Path) -> None:
    specs = specs_of(
        tmp_path,
        "mcp_servers:\n  - {name: time, command: [uvx, mcp-server-time]}\n",
        builtin=True,
    )
    assert [s.name for s in specs] == [BUILTIN_NAME, "time"]
    builtin = specs[0]
    assert builtin.origin == "builtin"
    assert builtin.transport == "stdio"
    assert [builtin.command, *builtin.args] == BUILTIN_CMD
    assert builtin.cwd == tmp_path.resolve()  # the workspace
    # Our own code, reading the same config: it needs the variables the config names.
    assert builtin.env == PARENT_ENV


def test_builtin_can_be_disabled(tmp_path: Path) -> None:
    specs = specs_of(tmp_path, "mcp:\n  builtin: false\n", builtin=True)
    assert specs == []


def test_seed_local_command_as_list_and_as_string(tmp_path: Path) -> None:
    specs = by_name(
        specs_of(
            tmp_path,
            """
mcp_servers:
  - name: listed
    type: local
    command: ["uvx", "mcp-server-time"]
    args: ["--local-timezone", "UTC"]
    env: {TZ_EXTRA: "1"}
  - name: spelled
    type: stdio
    command: "npx -y '@scope/some server'"
    cwd: /tmp
    timeout: 5
""",
        )
    )
    listed, spelled = specs["listed"], specs["spelled"]
    assert (listed.command, listed.args) == ("uvx", ("mcp-server-time", "--local-timezone", "UTC"))
    assert listed.transport == "stdio"
    assert listed.origin == "config"
    assert listed.timeout is None  # not written: the registry's call_timeout applies
    assert (spelled.command, spelled.args) == ("npx", ("-y", "@scope/some server"))
    assert spelled.cwd == Path("/tmp")
    assert spelled.timeout == 5


def test_stdio_env_is_filtered_parent_plus_own(tmp_path: Path) -> None:
    spec = specs_of(
        tmp_path,
        """
mcp_servers:
  - name: s
    command: [srv]
    env: {API_TOKEN: "${TOKEN}", PATH: /opt/bin}
""",
    )[0]
    assert spec.env["HOME"] == "/home/me"
    assert spec.env["LANG"] == "C.UTF-8"
    assert spec.env["API_TOKEN"] == "t0k3n"  # its own env, ${VAR} interpolated
    assert spec.env["PATH"] == "/opt/bin"  # its own env wins over ours
    for secret in ("OPENAI_API_KEY", "IMAP_PASSWORD", "TOKEN", "OCTOPUSSY_HOME"):
        assert secret not in spec.env


def test_seed_http_with_api_key_and_headers(tmp_path: Path) -> None:
    specs = by_name(
        specs_of(
            tmp_path,
            """
mcp_servers:
  - name: remote
    type: http
    url: https://mcp.example.org/mcp
    api_key: ${TOKEN}
    headers: {X-Team: blue}
  - name: legacy
    type: sse
    url: http://127.0.0.1:9/sse
    headers: {Authorization: "Token abc"}
    api_key: ignored-because-authorization-is-set
""",
        )
    )
    remote = specs["remote"]
    assert remote.transport == "http"
    assert remote.url == "https://mcp.example.org/mcp"
    assert remote.headers == {"X-Team": "blue", "Authorization": "Bearer t0k3n"}
    assert remote.env == {}
    legacy = specs["legacy"]
    assert legacy.transport == "sse"
    assert legacy.headers == {"Authorization": "Token abc"}


def test_mcpservers_json_shapes(tmp_path: Path) -> None:
    specs = by_name(
        specs_of(
            tmp_path,
            """
mcpServers:
  time: {command: uvx, args: [mcp-server-time], env: {A: "1"}}
  typed: {type: stdio, command: node, args: [server.js], cwd: /srv}
  web: {url: "http://127.0.0.1:1/mcp", headers: {Authorization: "Bearer x"}}
  web2: {type: streamable-http, url: "http://127.0.0.1:2/mcp"}
  web3: {type: streamableHttp, url: "http://127.0.0.1:3/mcp"}
  old: {type: sse, url: "http://127.0.0.1:4/sse"}
  parked: {command: uvx, disabled: true}
  slow: {command: uvx, timeout: 120}
""",
        )
    )
    time = specs["time"]
    assert (time.transport, time.command, time.args) == ("stdio", "uvx", ("mcp-server-time",))
    assert time.env["A"] == "1"
    assert time.env["PATH"] == "/usr/bin:/bin"
    assert "OPENAI_API_KEY" not in time.env
    assert time.origin == "mcpServers"
    assert specs["typed"].cwd == Path("/srv")
    assert specs["web"].transport == "http"
    assert specs["web"].headers == {"Authorization": "Bearer x"}
    assert specs["web2"].transport == "http"
    assert specs["web3"].transport == "http"
    assert specs["old"].transport == "sse"
    assert specs["parked"].enabled is False
    assert specs["slow"].timeout == 120


def test_both_shapes_together_keep_order(tmp_path: Path) -> None:
    specs = specs_of(
        tmp_path,
        """
mcp_servers:
  - {name: a, command: [a]}
  - {name: b, type: http, url: "http://127.0.0.1:1/mcp", enabled: false}
mcpServers:
  c: {command: c}
""",
        builtin=True,
    )
    assert [(s.name, s.origin, s.enabled) for s in specs] == [
        ("builtin", "builtin", True),
        ("a", "config", True),
        ("b", "config", False),
        ("c", "mcpServers", True),
    ]


def test_duplicate_names_name_both_places(tmp_path: Path) -> None:
    error = config_error(
        tmp_path,
        """
mcp_servers:
  - {name: time, command: [uvx, mcp-server-time]}
mcpServers:
  time: {command: uvx}
""",
    )
    assert "mcp_servers[0]" in str(error)
    assert "mcpServers.time" in str(error)
    assert str(error).startswith(str(tmp_path / "config.yaml"))


def test_a_server_named_builtin_clashes_with_ours(tmp_path: Path) -> None:
    text = "mcp_servers:\n  - {name: builtin, command: [my-tools]}\n"
    error = config_error(tmp_path, text, builtin=True)
    assert "built-in tools server" in str(error)
    assert "mcp_servers[0]" in str(error)
    # Without our built-in server the name is free.
    assert specs_of(tmp_path, "mcp:\n  builtin: false\n" + text, builtin=True)[0].name == "builtin"


def test_the_seeds_own_builtin_entry_is_replaced_by_ours(tmp_path: Path) -> None:
    specs = specs_of(
        tmp_path,
        """
mcp_servers:
  - name: "builtin"
    type: "local"
    command: ["python", "mcp_server/builtin_tools_server.py"]
""",
        builtin=True,
    )
    assert [(s.name, s.origin) for s in specs] == [("builtin", "builtin")]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("mcp_servers:\n  - {name: x, type: local}\n", "needs a command"),
        ("mcp_servers:\n  - {name: x, type: http}\n", "needs a url"),
        ("mcp_servers:\n  - {name: x, command: [a], url: 'http://h/mcp'}\n", "both"),
        ('mcp_servers:\n  - {name: x, command: "a \'b"}\n', "cannot split"),
        ("mcpServers:\n  x: {args: [a]}\n", "neither a command nor a url"),
        ("mcpServers:\n  x: {command: a, url: 'http://h/mcp'}\n", "both"),
        ("mcpServers:\n  x: {url: 'http://h/mcp', type: websocket}\n", "unknown type"),
        ("mcpServers:\n  x: {command: a, type: http}\n", "has a command but type"),
    ],
)
def test_entries_that_cannot_run_are_config_errors(tmp_path: Path, text: str, needle: str) -> None:
    error = config_error(tmp_path, text)
    assert needle in str(error)
    assert error.path is not None


def test_inherited_env_takes_only_harmless_variables() -> None:
    assert inherited_env(PARENT_ENV) == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/me",
        "LANG": "C.UTF-8",
    }
    assert inherited_env(PARENT_ENV, builtin=True) == PARENT_ENV


def test_describe_names_the_command_or_url() -> None:
    assert ServerSpec("s", "stdio", command="npx", args=("-y", "a b")).describe() == "npx -y 'a b'"
    assert ServerSpec("h", "http", url="http://h/mcp").describe() == "http://h/mcp (http)"
