"""Which process plays a tick, and whether that process is still there.

A tick's row names its owner as "host:pid:nonce". The nonce is drawn once per
process, so a process that was given the pid of a dead one (a container
restarted with the same hostname and pid 1, say) still tells the dead one's
ticks from its own. On another host nothing can be known from here: there the
tick's heartbeat decides (see `reaper`).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    nonce: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.nonce}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """The owner a tick row names; None for a row without one (or written by something else)."""
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[0] or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2])

    def is_gone(self) -> bool:
        """Known to be dead: on this host, and its pid is free, or held by this process under another nonce."""
        me = this_process()
        if self.host != me.host:
            return False
        if self.pid == me.pid:
            return self.nonce != me.nonce
        return not _pid_alive(self.pid)


def this_process() -> Owner:
    """This process as an owner: the same in every thread, and another one in a forked child."""
    return _this_process


def _draw() -> None:
    """Drawn once, at import (not lazily: two threads asking first at once would draw two
    nonces, and this process would take one of its own ticks for a dead process's), and again in
    a forked child."""
    global _this_process
    _this_process = Owner(socket.gethostname(), os.getpid(), secrets.token_hex(4))


_this_process: Owner
_draw()
os.register_at_fork(after_in_child=_draw)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
