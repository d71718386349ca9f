"""Listener tests on each event loop the servers run on: asyncio's own, and uvloop (the standalone server's).

Home Assistant's test harness fixes the event loop policy for the whole session, and the two
harness releases give pytest-asyncio different ways to choose a loop; a test decorated with
:func:`on_each_loop` therefore runs its own loop, one of each kind (``asyncio.Runner``), with the
server it tests started on that loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
import functools
import inspect
from pathlib import Path
from typing import Any, Final

import pytest
import uvloop

from .conftest import RunningServer

LOOPS: Final[dict[str, Callable[[], asyncio.AbstractEventLoop]]] = {
    "asyncio": asyncio.SelectorEventLoop,  # what asyncio.run() makes on Linux, and Home Assistant's kind
    "uvloop": uvloop.new_event_loop,
}

type ServerFactory = Callable[[Path], AbstractAsyncContextManager[RunningServer]]
type LoopTest = Callable[..., Awaitable[None]]


def run_on(loop: str, main: Awaitable[None]) -> None:
    """Run ``main`` to completion on a new event loop of the kind ``loop`` names."""
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(_awaited(main))


async def _awaited(main: Awaitable[None]) -> None:
    await main


def on_each_loop(serve: ServerFactory) -> Callable[[LoopTest], Callable[..., None]]:
    """Run an ``async def test(server, ...)`` once on each loop, its server started by ``serve(tmp_path)``.

    The test's other arguments are fixtures as usual (sync ones: the loop is the test's own).
    """

    def decorate(test: LoopTest) -> Callable[..., None]:
        signature = inspect.signature(test)
        wants_tmp_path = "tmp_path" in signature.parameters
        others = [p for name, p in signature.parameters.items() if name not in {"server", "tmp_path"}]

        @functools.wraps(test)
        def run(event_loop_kind: str, tmp_path: Path, **fixtures: Any) -> None:
            async def scenario() -> None:
                async with serve(tmp_path) as server:
                    extra = {"tmp_path": tmp_path} if wants_tmp_path else {}
                    await test(server, **extra, **fixtures)

            run_on(event_loop_kind, scenario())

        parameters = [
            inspect.Parameter("event_loop_kind", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str),
            inspect.Parameter("tmp_path", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Path),
            *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in others),
        ]
        run.__signature__ = signature.replace(parameters=parameters, return_annotation=None)  # type: ignore[attr-defined]
        del run.__wrapped__  # pytest reads the signature above, not the coroutine's
        parametrized: Callable[..., None] = pytest.mark.parametrize("event_loop_kind", list(LOOPS))(run)
        return parametrized

    return decorate
