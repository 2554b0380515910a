"""Serve the plan API with uvicorn from a daemon thread, as the metrics server is served.

A thread with its own event loop rather than a task in kopf's loop: a slow client or a large
response never delays a watch event, and uvicorn installs no signal handlers outside the main
thread, so kopf keeps SIGTERM. The socket is bound here, before the thread starts, so a taken
port is an ``OSError`` at startup (the operator stops with the reason) rather than a log line
from a thread that quietly died.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

STOP_TIMEOUT_SECONDS = 10.0


@dataclass
class ApiServer:
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket
    port: int

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=STOP_TIMEOUT_SECONDS)
        self.sock.close()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def start_api_server(app: FastAPI, port: int, host: str = "0.0.0.0") -> ApiServer:
    """Serve ``app`` on http://HOST:PORT (port 0: any free port, see ``ApiServer.port``)."""
    sock = bind(host, port)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",  # the app has no startup work; the operator owns the lifecycle
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="gpumix-api", daemon=True
    )
    thread.start()
    bound_port = int(sock.getsockname()[1])
    return ApiServer(server, thread, sock, bound_port)
