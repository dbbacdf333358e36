"""A DNS-SD browser, as a LAN client runs it: ``python -m tests.integration.mdns_browse TYPE
INSTANCE INTERFACE`` waits (bounded) for ``INSTANCE`` of service ``TYPE`` to be announced
on the interface with address ``INTERFACE``, resolves it and prints what it found as one
JSON line (port, addresses, TXT, host), or ``null`` when nothing came within the timeout.
The tests run it in-process and inside a network namespace (a second host on a veth link)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf


async def browse(stype: str, instance: str, interface: str, timeout: float = 10.0
                 ) -> dict[str, Any] | None:
    zc = AsyncZeroconf(interfaces=[interface], ip_version=IPVersion.V4Only)
    seen = asyncio.Event()
    name = f"{instance}.{stype}"

    def on_change(zeroconf: Zeroconf, service_type: str, name: str,
                  state_change: ServiceStateChange) -> None:
        if name == f"{instance}.{stype}" and state_change is ServiceStateChange.Added:
            seen.set()

    browser = AsyncServiceBrowser(zc.zeroconf, stype, handlers=[on_change])
    try:
        await asyncio.wait_for(seen.wait(), timeout)
        info = AsyncServiceInfo(stype, name)
        if not await info.async_request(zc.zeroconf, int(timeout * 1000)):
            return None
        return {"port": info.port, "addresses": info.parsed_addresses(),
                "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()},
                "host": info.server}
    except TimeoutError:
        return None
    finally:
        await browser.async_cancel()
        await zc.async_close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(browse(sys.argv[1], sys.argv[2], sys.argv[3]))), flush=True)
