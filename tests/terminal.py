"""``nstyle`` in a pseudo-terminal, as a user runs it: progress bar drawn, Ctrl-C typed, the window closed.

The child gets the terminal as its controlling terminal (``pty.fork``), so typing ``\\x03``
delivers SIGINT to its whole process group, as a real Ctrl-C does (worker processes
included), and closing the terminal sends SIGHUP. A reader thread drains the terminal all the
time: a full terminal buffer would block the child's writes.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import sys
import termios
import threading
import time
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """One ``python -m nstyle ARGS`` in a 120-column terminal."""

    def __init__(self, *args: str, cwd: Path | None = None, ignored: tuple[int, ...] = ()):
        """``ignored``: signals the child starts with ignored, as a non-interactive shell's
        background job (``nstyle ... &``) starts with SIGINT ignored."""
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec at once (nothing else is safe after fork in a threaded process)
            if cwd is not None:
                os.chdir(cwd)
            for signum in ignored:
                signal.signal(signum, signal.SIG_IGN)
            os.execve(sys.executable, [sys.executable, "-m", "nstyle", *args], env)
        # A size, as every terminal window has: with 0 columns tqdm would draw an empty bar.
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        self._closed = False
        self.returncode: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: the child closed its end, or we closed ours
                return
            if not data:
                return
            with self._lock:
                self._chunks.append(data)

    @property
    def screen(self) -> str:
        """Everything written so far, with carriage-return redraws split into lines and colours removed."""
        with self._lock:
            text = b"".join(self._chunks).decode(errors="replace")
        return ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")

    def lines(self) -> list[str]:
        return [line.strip() for line in self.screen.split("\n") if line.strip()]

    def wait_for(self, pattern: str, timeout: float = 240.0) -> re.Match[str]:
        """The first match of ``pattern`` on the screen, waiting for it (failing if the child ends first)."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.screen)
            if found:
                return found
            if self._exited(block=False) or time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never appeared; the screen:\n{self.screen[-3000:]}")
            time.sleep(0.05)

    def ctrl_c(self) -> None:
        """Type Ctrl-C: the terminal sends SIGINT to the foreground process group."""
        os.write(self.fd, b"\x03")

    def kill(self, signum: int) -> None:
        """A signal to the nstyle process alone, as ``kill`` or a scheduler sends it."""
        os.kill(self.pid, signum)

    def close(self) -> None:
        """Close the window: the kernel hangs the terminal up and sends SIGHUP."""
        if not self._closed:
            self._closed = True
            os.close(self.fd)

    def wait(self, timeout: float = 240.0) -> int:
        """The exit status, as a shell shows it (128 + N for a process killed by signal N)."""
        deadline = time.monotonic() + timeout
        while not self._exited(block=False):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                self._exited(block=True)
                raise AssertionError(f"nstyle did not end within {timeout} s; the screen:\n{self.screen[-3000:]}")
            time.sleep(0.05)
        self._reader.join(timeout=5)
        return self.returncode  # type: ignore[return-value]

    def _exited(self, block: bool) -> bool:
        if self.returncode is not None:
            return True
        pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return False
        code = os.waitstatus_to_exitcode(status)
        self.returncode = 128 - code if code < 0 else code
        return True

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._exited(block=True)
        self.close()


def iterations_shown(terminal: Terminal, total: int) -> int:
    """The last iteration count the progress bar showed ("123/800")."""
    counts = re.findall(rf"(\d+)/{total} \[", terminal.screen)
    return int(counts[-1]) if counts else 0
