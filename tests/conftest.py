"""Test-wide settings: the tests run on uvloop, the loop the server uses in production."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any


def pytest_asyncio_loop_factories(config: Any, item: Any
                                  ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    try:
        import uvloop
    except ImportError:
        return {"asyncio": asyncio.new_event_loop}
    return {"uvloop": uvloop.new_event_loop}
