"""The endpoint of a managed Python environment: 127.0.0.1:9001 inside its network namespace, serving the
platform app (the Lambda API with the environment's own credentials) and nothing else. Their runtime speaks
nimbus's framed protocol, so there is no Runtime API on it (runtimeapi.py serves that for other runtimes).

The listening socket is made inside the sandbox, where the namespace is, and handed to nimbus with one
SCM_RIGHTS message, so the host's loopback is never reachable from the function:
- fresh start: over a socketpair of its own (`_NIMBUS_API_FD`, runtime/bootstrap.py `hand_over_endpoint`;
  the control socket's asyncio transport cannot receive fds);
- fork from a zygote: with the forked child's second hello (runtime/nimbus_zygote.py), received by
  sandbox/zygote.py into `Forked.api_sock`.
Outside a network namespace (the `process` backend) there is no fixed port to offer: no endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from nimbus.control.specs import VersionSpec
from nimbus.sandbox.runtimeapi import ApiIdentity, RuntimeAPI, platform_endpoint, serve_platform
from nimbus.sandbox.types import PlatformApi

log = logging.getLogger(__name__)


class PlatformEndpoint:
    """One environment's platform-only endpoint: receives the listening socket, serves it, closes it."""

    def __init__(self, spec: VersionSpec, environment_id: str, max_body: int,
                 platform_api: PlatformApi | None = None) -> None:
        identity = ApiIdentity(spec.function_name, spec.version, spec.handler, spec.function_arn, environment_id)
        self.api: RuntimeAPI = platform_endpoint(identity, max_body, platform_api)
        self.closed = False
        self._server: asyncio.Server | None = None
        self._channel: socket.socket | None = None  # host end of the fresh start's hand-over socketpair
        self._child: socket.socket | None = None
        self._loop = asyncio.get_running_loop()

    # ---------------------------------------------------------------- fresh start

    def launch_environ(self) -> tuple[dict[str, str], int]:
        """The variables and the fd a fresh runtime needs to hand its listening socket over."""
        self._channel, self._child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return {"_NIMBUS_API_FD": str(self._child.fileno())}, self._child.fileno()

    def launched(self) -> None:
        """The runtime started (or failed to): wait for its socket."""
        if self._child is not None:
            self._child.close()
            self._child = None
        channel = self._channel
        if channel is None or self.closed:
            return
        channel.setblocking(False)
        self._loop.add_reader(channel.fileno(), self._on_channel)

    def _on_channel(self) -> None:
        channel = self._channel
        if channel is None:
            return
        try:
            _, fds, _, _ = socket.recv_fds(channel, 16, 1)
        except BlockingIOError:
            return
        except OSError:
            fds = []
        self._close_channel()
        if fds:
            self.serve(socket.socket(fileno=fds[0]))

    def _close_channel(self) -> None:
        for sock in (self._channel, self._child):
            if sock is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._loop.remove_reader(sock.fileno())
                sock.close()
        self._channel = self._child = None

    # ---------------------------------------------------------------- serving

    def serve(self, listener: socket.socket) -> None:
        """Serve the listening socket from the sandbox (takes ownership of it)."""
        if self.closed:
            listener.close()
            return
        listener.setblocking(False)
        self._loop.create_task(self._serve(listener))

    async def _serve(self, listener: socket.socket) -> None:
        try:
            server = await serve_platform(self.api, listener)
        except OSError as e:
            log.warning("environment %s: no platform endpoint: %s", self.api.identity.environment_id, e)
            listener.close()
            return
        if self.closed:
            server.close()
            return
        self._server = server

    def close(self) -> None:
        """Stop serving (the environment ended): the listener and every connection go."""
        if self.closed:
            return
        self.closed = True
        self._close_channel()
        if self._server is not None:
            self._server.close()
            self._server = None
        self.api.close()
