"""Passing file descriptors and credentials between nimbus and processes it starts over Unix sockets: a
peer's one-byte hello, with its pid from the kernel (SCM_CREDENTIALS, translated into our pid namespace) and
any fds it sends along (SCM_RIGHTS)."""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import socket
from typing import Any


class HelloError(Exception):
    """The peer failed, closed its end, or said nothing in time."""


async def receive_hello(
    sock: socket.socket, timeout: float, failed: asyncio.Future[None] | None = None, fds: list[int] | None = None
) -> int:
    """Wait (`timeout` seconds at most) for the peer's hello byte; its pid, in our pid namespace, comes with
    it from the kernel. `failed` is the zygote's word that the fork failed. File descriptors sent with the
    hello are appended to `fds` (closed when it is None). No task is made: nothing is left behind whatever
    happens (cancellation included)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    fut: asyncio.Future[int] = loop.create_future()
    fd = sock.fileno()

    def readable() -> None:
        try:
            data, ancdata, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(4 * 4))
        except BlockingIOError:
            return
        except OSError as e:
            loop.remove_reader(fd)
            if not fut.done():
                fut.set_exception(HelloError(f"forked environment: {e}"))
            return
        loop.remove_reader(fd)
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                passed = array.array("i")
                passed.frombytes(payload[: len(payload) - len(payload) % passed.itemsize])
                if fds is not None and not fut.done():
                    fds.extend(passed)
                else:
                    for f in passed:
                        os.close(f)
        if fut.done():
            return
        if not data:
            fut.set_exception(HelloError("the forked environment exited before it was ready"))
            return
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                creds = array.array("i")
                creds.frombytes(payload[: 3 * creds.itemsize])
                fut.set_result(creds[0])
                return
        fut.set_exception(HelloError("no credentials with the forked environment's hello"))

    loop.add_reader(fd, readable)
    waits: set[asyncio.Future[Any]] = {fut} if failed is None else {fut, failed}
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if fut.done():
            return fut.result()
        if failed is not None and failed.done():
            raise HelloError(str(failed.exception()))
        raise HelloError("no hello from the forked environment")
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(fd)
        for f in waits:
            if f.done() and not f.cancelled():
                f.exception()  # retrieved: never "exception was never retrieved"
            else:
                f.cancel()
