"""LAN discovery: the server announces itself by multicast DNS / DNS-SD (RFC 6762, 6763) so
that clients on the local network find it without DNS: ``_xmpp-client._tcp`` on the
STARTTLS port and, with direct TLS, ``_xmpps-client._tcp`` (XEP-0368's service name), each
with a TXT record ``domain=<server.domain>`` (the XMPP domain to ask for, which the host
name the SRV record points to need not be) and ``txtvers=1``. Off by default
(``[lan] enabled``); python-zeroconf answers queries and withdraws the records on a clean
stop. With several workers, worker 0 announces for the node.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING, Any

from hongyan.modules.lan.options import LanOptions
from hongyan.server.module import Module

if TYPE_CHECKING:
    from hongyan.server.module import ModuleAPI

#: how long the announcer waits for the client listener to open (it opens after modules start)
LISTEN_WAIT = 60.0


class Lan(Module):
    name = "lan"

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        self.options = api.options(LanOptions)
        self._zc: Any = None
        self._infos: list[Any] = []
        #: the services announced: (type, instance name, port)
        self.announced: list[tuple[str, str, int]] = []

    async def start(self) -> None:
        if self.options.enabled:
            self.api.spawn(self._announce())

    def addresses(self) -> list[str]:
        """What the A/AAAA records say: ``[lan] addresses``, else ``c2s.bind`` when it names
        addresses, else every interface's (loopback only when there is nothing else)."""
        if self.options.addresses:
            return list(self.options.addresses)
        bound = [a for a in self.api.config.c2s.bind if a not in ("0.0.0.0", "::", "")]
        if bound:
            return bound
        import ifaddr

        found: list[str] = []
        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
                addr = ipaddress.ip_address(text.split("%")[0])
                if not addr.is_loopback and not addr.is_link_local and str(addr) not in found:
                    found.append(str(addr))
        return found or ["127.0.0.1"]

    async def _announce(self) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + LISTEN_WAIT
        while not self.api.c2s_ports[0]:
            if loop.time() > end:
                self.log.warning("the client listener did not open: nothing announced")
                return
            await asyncio.sleep(0.05)
        cluster = self.api.cluster
        if cluster is not None and cluster.index != 0:
            return
        from zeroconf import InterfaceChoice, IPVersion
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        o = self.options
        starttls, direct = self.api.c2s_ports
        domain = self.api.domain
        instance = o.instance or f"Hongyan {domain}"
        host = (o.host or socket.gethostname().split(".")[0]) + ".local."
        packed = [ipaddress.ip_address(a).packed for a in self.addresses()]
        interfaces: Any = list(o.interfaces) or InterfaceChoice.All
        versions = {ipaddress.ip_address(a).version for a in o.interfaces}
        version = IPVersion.V4Only if versions == {4} else \
            IPVersion.V6Only if versions == {6} else IPVersion.All
        self._zc = AsyncZeroconf(interfaces=interfaces, ip_version=version)
        services = [("_xmpp-client._tcp.local.", starttls)]
        if direct:
            services.append(("_xmpps-client._tcp.local.", direct))
        for stype, port in services:
            info = AsyncServiceInfo(stype, f"{instance}.{stype}", port=port, addresses=packed,
                                    server=host, properties={"txtvers": "1", "domain": domain})
            # a name another server on the network holds gets a " (2)" suffix
            await self._zc.async_register_service(info, allow_name_change=True)
            self._infos.append(info)
            self.announced.append((stype, info.name, port))
            self.log.info("announced %s on port %d by mDNS", info.name, port)

    async def stop(self) -> None:
        zc, self._zc = self._zc, None
        if zc is None:
            return
        for info in self._infos:
            try:
                await asyncio.wait_for(zc.async_unregister_service(info), 5)
            except Exception as exc:  # withdrawing is a courtesy: the records expire anyway
                self.log.warning("could not withdraw %s: %s", info.name, exc)
        self._infos.clear()
        await zc.async_close()


MODULE = Lan
