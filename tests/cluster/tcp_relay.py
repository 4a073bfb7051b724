"""SSH ``ProxyCommand`` for the launcher test: pipes stdin/stdout to ``HOST PORT`` over TCP.

Ray's SSH runner has no port setting (it always dials port 22), but it passes
``auth.ssh_proxy_command`` to every ``ssh`` and ``rsync`` it runs; this relay lets the test's
sshd listen on a free port instead of taking 22. Debian's netcat would do the same, but is
one more package to install.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys


def relay(host: str, port: int) -> None:
    """Copy bytes both ways until the server closes the connection."""
    sock = socket.create_connection((host, port), timeout=30)
    sock.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ)
    sel.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj == 0:
                data = os.read(0, 65536)
                if data:
                    sock.sendall(data)
                else:  # ssh closed our stdin: half-close, keep reading the reply
                    sel.unregister(0)
                    sock.shutdown(socket.SHUT_WR)
            else:
                data = sock.recv(65536)
                if not data:
                    return
                os.write(1, data)


if __name__ == "__main__":
    relay(sys.argv[1], int(sys.argv[2]))
