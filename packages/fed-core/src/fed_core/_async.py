"""Running what may be a coroutine from synchronous code, also inside a running event loop."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any


def run_sync(result: Any) -> Any:
    """`result`, or, if it is awaitable, what it gives when run to completion.

    Called from a thread whose event loop is running (a notebook), the awaitable runs on an event loop of
    its own in another thread, so synchronous fed code works wherever it is called.
    """
    if not inspect.isawaitable(result):
        return result

    async def wait() -> Any:
        return await result

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(wait())
        except BaseException as error:  # re-raised in the caller's thread
            box["error"] = error

    thread = threading.Thread(target=run, name="fed-run-sync")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
