"""An HTTP proxy in front of the moto server, on the test's own event loop, that holds back
the answers to chosen AWS calls until the test lets them go.

A held call has reached AWS (moto has done it) and its caller is waiting for the answer: a
test can cancel an enqueue, or close a service, exactly inside that call, with no sleeps.
Calls are told apart by their ``X-Amz-Target`` header (SQS and DynamoDB both speak the JSON
protocol): ``"AmazonSQS.SendMessage"``, ``"DynamoDB_20120810.PutItem"``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from types import TracebackType

from aiohttp import ClientSession, web

# Hop-by-hop headers, and those the proxy's own client and server write.
_SKIPPED = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class _Hold:
    left: int
    error: str | None  # answer with this AWS error code instead of AWS's answer


class HoldingProxy:
    """``async with HoldingProxy(moto_endpoint) as proxy``: point clients at
    ``proxy.endpoint``; :meth:`hold` a call, :meth:`wait_held`, then :meth:`release`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.endpoint = ""
        self.held = 0  # answers held back so far
        self._holds: dict[str, _Hold] = {}
        self._released = asyncio.Event()
        self._changed = asyncio.Condition()
        self._session: ClientSession | None = None
        self._runner: web.AppRunner | None = None

    def hold(self, target: str, count: int = 1, *, error: str | None = None) -> None:
        """Hold the answers to the next ``count`` calls of ``target`` until :meth:`release`;
        with ``error`` (an SQS error code), answer those calls with that error (HTTP 400)
        instead, without passing them on."""
        self._holds[target] = _Hold(count, error)

    async def wait_held(self, count: int, timeout: float = 20.0) -> None:
        """Wait until ``count`` answers are held back."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.held >= count), timeout)

    def release(self) -> None:
        """Let every held answer go, and those of later calls."""
        self._released.set()

    async def __aenter__(self) -> HoldingProxy:
        # Bodies pass through as they are (a DynamoDB answer carries its CRC32).
        self._session = ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        hold = self._holds.get(request.headers.get("X-Amz-Target", ""))
        if hold is not None and hold.left > 0:
            hold.left -= 1
        else:
            hold = None
        body = await request.read()
        if hold is not None and hold.error is not None:
            await self._held()
            return web.json_response(
                {"__type": f"com.amazonaws.sqs#{hold.error}", "message": "refused by the proxy"},
                status=400,
                content_type="application/x-amz-json-1.0",
                dumps=json.dumps,
            )
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIPPED}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body
        ) as answer:
            status, content = answer.status, await answer.read()
            answer_headers = {k: v for k, v in answer.headers.items() if k.lower() not in _SKIPPED}
        if hold is not None:
            await self._held()
        return web.Response(status=status, body=content, headers=answer_headers)

    async def _held(self) -> None:
        async with self._changed:
            self.held += 1
            self._changed.notify_all()
        await self._released.wait()
