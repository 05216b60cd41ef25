"""Voila's kernel websocket, kernel REST, shutdown and page handlers, guarded for a room full of visitors.

:func:`replace_handlers` swaps them into Voila's handler list (``server.MushroomVoila.init_handlers``).
Limits come from the tornado setting ``mushroom`` (max_kernels, close_grace, pool) that ``voila_config`` sets.
A kernel's websocket is opened only by the page that was served that kernel (a random key in a cookie scoped
to that kernel's path), and only widget messages reach a kernel (no code execution through the websocket).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import secrets
import time
from typing import Callable

V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
FULL_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="{retry}">
<title>Mushroom workbench — full</title></head><body style="font-family: sans-serif; margin: 3em">
<p class="mushroom-full">The workbench is full, retrying in a few seconds.</p>
<p style="color: #555">{limit} people are using it now; this page reloads by itself every {retry} s.</p>
</body></html>"""

log = logging.getLogger("mushroom_lib.dashboard")


PAGE_COOKIE = "mushroom_page"
#: what a page's widgets send its kernel (shell channel); anything else — execute, inspect, complete,
#: history, control, stdin — is dropped: a visitor's devtools must not run code on the server
ALLOWED_SHELL = {"kernel_info_request", "comm_info_request", "comm_open", "comm_msg", "comm_close"}


def _limits(handler) -> dict:
    return handler.settings.get("mushroom", {})


def _page_keys(handler) -> dict:
    """kernel id -> the key its page was given (one dict for the whole server, in tornado's settings)."""
    return handler.settings.setdefault("mushroom_page_keys", {})


def page_key_matches(keys: dict, kernel_id: str, offered: str | None) -> bool:
    """Whether a websocket request for ``kernel_id`` carries the key of the page that was served it."""
    expected = keys.get(kernel_id)
    return bool(expected and offered) and hmac.compare_digest(expected.encode(), offered.encode())


async def shutdown_if_abandoned(manager, kernel_id: str) -> bool:
    """Shut a kernel down if no websocket is connected to it (its page closed). True if it was shut down."""
    if kernel_id not in manager:
        return False
    if manager.kernel_model(kernel_id).get("connections", 0) > 0:
        return False  # the page reconnected within the grace period
    log.warning("Shutting down kernel %s: its page closed", kernel_id)
    await manager.shutdown_kernel(kernel_id)
    return True


def forget_page_keys(keys: dict, manager) -> None:
    """Drop the keys of kernels that are gone (closed pages, culled kernels): the dict stays bounded."""
    for kernel_id in [k for k in keys if k not in manager]:
        keys.pop(kernel_id, None)


def _v1_channel_and_type(ws_message: bytes) -> tuple[str, str | None]:
    """(channel, msg_type) of a v1 websocket message; ValueError if it is not one (checked bounds first:
    the count of offsets is the client's word, and jupyter_server's own parser trusts it)."""
    if len(ws_message) < 8 * 3:
        raise ValueError("too short")
    count = int.from_bytes(ws_message[:8], "little")
    if not 3 <= count <= 64 or len(ws_message) < 8 * (count + 1):
        raise ValueError("bad offset count")
    offsets = [int.from_bytes(ws_message[8 * (i + 1):8 * (i + 2)], "little") for i in range(count)]
    if offsets != sorted(offsets) or offsets[-1] > len(ws_message):
        raise ValueError("bad offsets")
    channel = ws_message[offsets[0]:offsets[1]].decode("utf-8")
    header = json.loads(ws_message[offsets[1]:offsets[2]])
    return channel, header.get("msg_type") if isinstance(header, dict) else None


def message_allowed(ws_message) -> bool:
    """Whether a v1 websocket message from a page may reach its kernel: widget traffic on the shell channel
    only (never control, shutdown or code execution)."""
    if not isinstance(ws_message, bytes):
        return False  # v1 messages are binary; the legacy JSON protocol is refused at the upgrade
    try:
        channel, msg_type = _v1_channel_and_type(ws_message)
    except (ValueError, UnicodeDecodeError):
        return False
    return channel == "shell" and msg_type in ALLOWED_SHELL


def websocket_handler_class():
    from tornado import web
    from tornado.ioloop import IOLoop
    from voila.tornado.kernel_websocket_handler import VoilaKernelWebsocketHandler


    class GuardedKernelWebsocketHandler(VoilaKernelWebsocketHandler):
        """Only the page served this kernel; v1 subprotocol only; widget messages only; freed when the page goes."""

        async def get(self, *args, **kwargs):
            offered = [p.strip() for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
            if V1_SUBPROTOCOL not in offered:
                raise web.HTTPError(400, f"only the {V1_SUBPROTOCOL} websocket subprotocol is accepted")
            kernel_id = kwargs.get("kernel_id") or (args[0] if args else "")
            if not page_key_matches(_page_keys(self), kernel_id, self.get_cookie(PAGE_COOKIE)):
                raise web.HTTPError(403, "this kernel belongs to another page")
            loads = _page_loads(self)
            if loads is not None:
                loads.connected(kernel_id)
            return await super().get(*args, **kwargs)

        def select_subprotocol(self, subprotocols):
            return V1_SUBPROTOCOL if V1_SUBPROTOCOL in subprotocols else None

        def on_message(self, ws_message):
            if message_allowed(ws_message):
                return super().on_message(ws_message)
            log.warning("Dropped a message that is not widget traffic from the page of kernel %s", self.kernel_id)
            return None

        def on_close(self):
            super().on_close()
            grace = _limits(self).get("close_grace", 10)
            manager, kernel_id = self.kernel_manager, self.kernel_id
            IOLoop.current().call_later(grace, lambda: IOLoop.current().add_callback(
                shutdown_if_abandoned, manager, kernel_id))

    return VoilaKernelWebsocketHandler, GuardedKernelWebsocketHandler


def kernel_handler_class():
    from jupyter_server.services.kernels.handlers import KernelHandler
    from tornado import web

    class ReadOnlyKernelHandler(KernelHandler):
        """GET tells whether a kernel lives; nobody deletes one through REST (its page closing frees it)."""

        async def delete(self, kernel_id):
            raise web.HTTPError(405, "kernels stop when their page closes")

    return KernelHandler, ReadOnlyKernelHandler


def shutdown_handler_class():
    from jupyter_server.base.handlers import APIHandler
    from tornado import web
    from voila.shutdown_kernel_handler import VoilaShutdownKernelHandler

    class NoShutdownHandler(APIHandler):
        """The page's beforeunload call: refused for everyone (its kernel is shut down when the websocket closes)."""

        async def post(self, kernel_id):
            raise web.HTTPError(405, "kernels stop when their page closes")

    return VoilaShutdownKernelHandler, NoShutdownHandler


def _touch(manager, kernel_id: str) -> None:
    """Being handed to a page is activity: a pre-heated kernel's last activity was its notebook run, maybe
    long ago, and the idle culler shut it down before a slow-loading page (a burst) could connect."""
    from jupyter_server._tz import utcnow

    try:
        manager.get_kernel(kernel_id).last_activity = utcnow()
    except KeyError:  # already gone
        pass


class _ServedKernels:
    """The kernel manager as a page request sees it: the kernel it hands out (pre-heated or new) is
    reported to ``on_served`` before the page's first byte, so the page's key cookie can still be set."""

    def __init__(self, manager, on_served):
        self._manager, self._on_served = manager, on_served

    def __getattr__(self, name):
        return getattr(self._manager, name)

    async def get_rendered_notebook(self, *args, **kwargs):
        result = await self._manager.get_rendered_notebook(*args, **kwargs)
        self._on_served(result[2])  # (render_task, rendered_cache, kernel_id)
        return result

    async def start_kernel(self, *args, **kwargs):
        from nbclient.util import ensure_async

        kernel_id = await ensure_async(self._manager.start_kernel(*args, **kwargs))
        self._on_served(kernel_id)
        return kernel_id


def page_handler_class():
    from jupyter_server.utils import url_path_join
    from voila.tornado.handler import TornadoVoilaHandler


    class CappedVoilaHandler(TornadoVoilaHandler):
        """The page, unless ``max_kernels`` pages are open: then a plain page that retries by itself."""

        starting = 0  # page requests in flight (their kernels may not be listed yet)

        @property
        def kernel_manager(self):
            return _ServedKernels(super().kernel_manager, self._served)

        def _served(self, kernel_id: str) -> None:
            """Give this page the key to its kernel's websocket (a cookie sent only to that kernel's URLs)."""
            keys = _page_keys(self)
            forget_page_keys(keys, self.settings["kernel_manager"])
            keys[kernel_id] = secrets.token_urlsafe(32)
            _touch(self.settings["kernel_manager"], kernel_id)
            loads = _page_loads(self)
            if loads is not None:
                loads.served(kernel_id)
            self.set_cookie(PAGE_COOKIE, keys[kernel_id], path=url_path_join(self.base_url, "api/kernels", kernel_id),
                            httponly=True, samesite="Strict")

        def _full(self) -> bool:
            limits = _limits(self)
            manager = self.kernel_manager
            listed = max(0, len(manager.list_kernel_ids()) - self._ready_pool())
            # a request in flight may or may not have its kernel listed yet: count the larger of the two, so
            # a burst can never start more than twice the cap, and a normal arrival is never refused early
            return max(listed, CappedVoilaHandler.starting) >= limits.get("max_kernels", 8)

        def _ready_pool(self) -> int:
            """Pre-heated kernels waiting for a visitor (a refill still starting counts as a page until ready:
            Voila's ``_pools`` holds the only record of which kernels are the pool's)."""
            pool = getattr(self.kernel_manager, "_pools", {}).get(self.notebook_path, [])
            return sum(1 for task in pool if task.done() and not task.cancelled() and task.exception() is None)

        def should_use_rendered_notebook(self, notebook_data, pool_size, template_name, theme, request_args):
            """Take a pre-heated kernel only when one is ready: a visitor past the pool starts a kernel at
            once instead of queueing behind a refill that waits ``fill_delay`` (Voila's ``_pools`` is the only
            place that says whether the next pool kernel is ready)."""
            pool = getattr(self.kernel_manager, "_pools", {}).get(self.notebook_path, [])
            if not pool or not pool[0].done():
                return False
            return super().should_use_rendered_notebook(notebook_data, pool_size, template_name, theme, request_args)

        async def get(self, path=None):
            if self._full():
                self.set_status(503)
                self.set_header("Retry-After", "5")
                self.set_header("Content-Type", "text/html; charset=utf-8")
                self.finish(FULL_PAGE.format(retry=5, limit=_limits(self).get("max_kernels", 8)))
                return
            CappedVoilaHandler.starting += 1
            try:
                return await super().get(path)
            finally:
                CappedVoilaHandler.starting -= 1

    return TornadoVoilaHandler, CappedVoilaHandler


class PageLoads:
    """Pages handed a kernel whose websocket has not connected yet (they are still loading), and when a page
    was last served or connected (its visitor's first actions, a sample or an upload, come just after)."""

    LOADING_MAX_S = 60.0  # a tab closed while loading stops counting after this
    SETTLE_S = 10.0  # quiet this long after the last page was served or connected before a refill starts

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._since: dict[str, float] = {}
        self._last = -math.inf

    def served(self, kernel_id: str) -> None:
        self._since[kernel_id] = self._last = self._clock()

    def connected(self, kernel_id: str) -> None:
        self._since.pop(kernel_id, None)
        self._last = self._clock()

    def loading(self) -> int:
        now = self._clock()
        for kernel_id in [k for k, t in self._since.items() if now - t > self.LOADING_MAX_S]:
            self._since.pop(kernel_id, None)
        return len(self._since)

    def busy(self) -> bool:
        """Whether a refill should wait: a page is loading, or one was served or connected < SETTLE_S ago."""
        return bool(self.loading()) or self._clock() - self._last < self.SETTLE_S


def _page_loads(handler) -> PageLoads | None:
    return getattr(handler.settings.get("kernel_manager"), "mushroom_page_loads", None)


def one_refill_at_a_time(manager) -> None:
    """Refill the pre-heated pool one kernel at a time, and only once the pages are settled (:meth:`PageLoads.busy`):
    a refill starts a kernel process and renders the notebook in the server process, and a burst's refills
    starting while its pages loaded, or just after, when every visitor clicked at once, stalled every page.
    (The pool filled at start-up is not affected: its kernels were scheduled before this wraps ``_initialize``.)"""
    loads = manager.mushroom_page_loads = PageLoads()
    initialize = getattr(manager, "_initialize", None)
    if initialize is None:  # no pre-heated pool
        return
    one = asyncio.Semaphore(1)

    async def serialized(*args, **kwargs):
        async with one:
            while loads.busy():
                await asyncio.sleep(0.5)  # a refill waits for the pages being served (bounded by LOADING_MAX_S)
            return await initialize(*args, **kwargs)

    manager._initialize = serialized


def replace_handlers(handlers: list) -> list:
    """Voila's handler list with the guarded classes in place of the originals."""
    swaps = dict([websocket_handler_class(), kernel_handler_class(), shutdown_handler_class(), page_handler_class()])
    return [(h[0], swaps.get(h[1], h[1]), *h[2:]) for h in handlers]
