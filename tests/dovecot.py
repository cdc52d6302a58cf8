"""A real Dovecot IMAP server in a temp dir, on free loopback ports (tests and benchmarks).

    running_dovecot() / DovecotServer(dir).start() ──► dovecot -F -c dir/dovecot.conf
                                                       (own process group)
        plain port  (IMAP, STARTTLS offered)     imaps port (implicit TLS, self-signed cert)
        user "alice" / password "secret", maildir under tmp/mail/alice
    .append(raw)   seed mail with IMAP APPEND (stdlib imaplib, a separate connection)
    .stop()        signal the whole group; .start() again reuses the same mail store

Facts behind the config (TEST-SERVERS.md): nothing included from /etc; under root the
userdb uid/gid must be ``nobody`` and every parent of the temp dir traversable by it.
``idle=False`` removes IDLE from the capabilities the server advertises, so a client
must fall back to polling. Importable by plain name (``pythonpath`` in pyproject).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "alice"
PASSWORD = "secret"

# Dovecot 2.3's capabilities after login, less IDLE (for the polling fallback).
_NO_IDLE_CAPS = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY "
    "LITERAL+ NOTIFY SPECIAL-USE"
)


def dovecot_binary() -> str | None:
    for candidate in ("dovecot", "/usr/sbin/dovecot"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


class DovecotServer:
    """One Dovecot instance; ``start``/``stop`` may be repeated (the mail store stays)."""

    def __init__(self, root: Path, *, idle: bool = True) -> None:
        self.root = root
        self.idle = idle
        self.port = free_port()
        self.ssl_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.cert = root / "cert.pem"
        self._prepare()

    # -- setup ----------------------------------------------------------------------------
    def _prepare(self) -> None:
        root = self.root
        for parent in [root, *root.parents]:
            # Dovecot's mail processes run as nobody: every parent must be traversable.
            with contextlib.suppress(OSError):
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o011)
        for sub in ("run", "state", "mail", "home"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-days", "2",
                "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout", str(root / "key.pem"), "-out", str(self.cert),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        if os.geteuid() == 0:
            for sub in ("mail", "home"):
                shutil.chown(root / sub, "nobody", "nogroup")
        uid = "nobody" if os.geteuid() == 0 else str(os.geteuid())
        gid = "nogroup" if os.geteuid() == 0 else str(os.getegid())
        caps = "" if self.idle else f"imap_capability = {_NO_IDLE_CAPS}\n"
        (root / "dovecot.conf").write_text(
            f"""instance_name = octotest-{self.port}
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
imap_idle_notify_interval = 1 secs
{caps}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.ssl_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""
        )

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> DovecotServer:
        binary = dovecot_binary()
        if binary is None:
            raise RuntimeError("dovecot is not installed: run scripts/test-deps")
        self.process = subprocess.Popen(
            [binary, "-F", "-c", str(self.root / "dovecot.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "stderr.log", "ab"),  # noqa: SIM115 - the child keeps it
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited at start: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not start in {timeout}s: {self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        # Children (imap, imap-login, auth) may linger a moment: wait until the ports close.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.process is not None and _state(self.process.pid) not in (None, "Z")

    def log_tail(self, lines: int = 20) -> str:
        texts = []
        for name in ("dovecot.log", "stderr.log"):
            with contextlib.suppress(OSError):
                texts.extend((self.root / name).read_text(errors="replace").splitlines())
        return " | ".join(texts[-lines:])

    # -- mail -----------------------------------------------------------------------------
    def client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        conn.login(USER, PASSWORD)
        return conn

    def append(self, *messages: bytes, mailbox: str = "INBOX") -> None:
        """APPEND each raw message (creating ``mailbox`` if needed), unflagged."""
        conn = self.client()
        try:
            if mailbox.upper() != "INBOX":
                conn.create(mailbox)
            for raw in messages:
                status, detail = conn.append(mailbox, "", None, raw)
                if status != "OK":
                    raise RuntimeError(f"APPEND failed: {detail!r}")
        finally:
            conn.logout()

    def flags(self, mailbox: str = "INBOX") -> dict[int, str]:
        """UID -> FLAGS text of every message (read with EXAMINE: changes nothing)."""
        conn = self.client()
        try:
            conn.select(mailbox, readonly=True)
            _status, data = conn.uid("FETCH", "1:*", "(FLAGS)")
            result: dict[int, str] = {}
            for item in data:
                if not isinstance(item, bytes):
                    continue
                text = item.decode()
                uid = int(text.split("UID ")[1].split()[0].rstrip(")"))
                result[uid] = text.split("FLAGS (")[1].split(")")[0]
            return result
        finally:
            conn.logout()

    def reset_uidvalidity(self, mailbox: str = "INBOX") -> int:
        """Give ``mailbox`` a new UIDVALIDITY, as when a server rebuilds its index."""
        new = int(time.time()) + 1000
        subprocess.run(
            [
                shutil.which("doveadm") or "/usr/bin/doveadm",
                "-c", str(self.root / "dovecot.conf"),
                "mailbox", "update", "-u", USER, "--uid-validity", str(new), mailbox,
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return new

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@contextlib.contextmanager
def running_dovecot(*, idle: bool = True) -> Iterator[DovecotServer]:
    """A started server in its own temp dir, stopped and removed afterwards.

    Not under pytest's ``tmp_path``: every pytest session that starts as root (anyone's,
    on a shared machine) resets ``/tmp/pytest-of-root`` to mode 0700, which locks Dovecot's
    unprivileged processes (auth as ``dovecot``, imap as ``nobody``) out in mid-test.
    """
    if dovecot_binary() is None:
        pytest.skip("dovecot is not installed (scripts/test-deps installs dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="octopussy-dovecot-"))
    root.chmod(0o755)
    server = DovecotServer(root / "server", idle=idle)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    """A running Dovecot with IDLE (import this fixture into a conftest)."""
    with running_dovecot(idle=True) as server:
        yield server


@pytest.fixture
def dovecot_noidle() -> Iterator[DovecotServer]:
    """A running Dovecot that does not advertise IDLE."""
    with running_dovecot(idle=False) as server:
        yield server
