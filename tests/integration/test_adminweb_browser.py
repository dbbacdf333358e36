"""The admin page in a real browser (headless Debian Chromium driven by playwright-core,
``tests/integration/browser.py``): an administrator logs in with the XMPP password, sees a
slixmpp user online (its hostile status shown as text, no script run), creates a user, disables
it (slixmpp can no longer log in) and makes an invitation. The page's CSP, cookie and origin
checks are what the browser obeys; screenshots go to the test's tmp dir."""

from __future__ import annotations

from pathlib import Path

from tests.integration.adminweb import ADMIN, ADMIN_PW, HOSTILE, hostile_user, start
from tests.integration.browser import Browsers
from tests.integration.conftest import Harness
from tests.integration.invites import CONFIG as INVITES
from tests.integration.test_adhoc import can_login


async def test_an_admin_manages_the_server_in_a_browser(harness: Harness, browsers: Browsers,
                                                        tmp_path: Path) -> None:
    await start(harness, INVITES)
    await hostile_user(harness)
    node = harness.node
    assert node is not None
    out = tmp_path / "screenshots"
    out.mkdir()
    root = f"http://127.0.0.1:{node.http_port}"

    async def call(cmd: str, **kw: object) -> object:
        return await browsers.call(cmd, name="admin", **kw)

    try:
        opened = await call("open", url=f"{root}/admin/")
        assert opened["status"] == 200  # type: ignore[index]
        await call("fill", selector="input[name=jid]", value=ADMIN)
        await call("fill", selector="input[name=password]", value=ADMIN_PW)
        await call("screenshot", path=str(out / "login.png"))
        await call("click", selector="button[type=submit]")
        await call("wait", selector="#online td", text="mallory@localhost")
        statuses = await call("text", selector="#online td")
        assert HOSTILE in statuses  # type: ignore[operator]  # as text, not markup
        assert await call("count", selector="#online img, #online script") == 0
        await call("screenshot", path=str(out / "dashboard.png"))

        await call("fill", selector="form.create input[name=username]", value="carol")
        await call("fill", selector="form.create input[name=password]", value="carol-pw")
        await call("click", selector="form.create button")
        await call("wait", selector=".notice", text="Created carol@localhost.")
        assert await can_login(harness, "carol@localhost", "carol-pw")
        await call("click", selector="tr[data-user='carol@localhost'] button", text="Disable")
        await call("wait", selector=".notice", text="Disabled carol@localhost.")
        await call("wait", selector="tr[data-user='carol@localhost'] td.state",
                   text="disabled")
        assert not await can_login(harness, "carol@localhost", "carol-pw")
        await call("screenshot", path=str(out / "disabled.png"))

        await call("fill", selector="form.invite input[name=username]", value="dave")
        await call("click", selector="form.invite button")
        await call("wait", selector="#invite-link", text="/invite/")
        link = (await call("text", selector="#invite-link"))[0]  # type: ignore[index]
        assert "/invite/" in link
        await call("screenshot", path=str(out / "invite.png"))

        # only the page's own files were loaded (no CDN)
        requests = await call("requests")
        assert all(u.startswith(root) for u in requests), requests  # type: ignore[union-attr]
        log = await call("log")
        assert not [line for line in log if "pageerror" in line  # type: ignore[union-attr]
                    or "Content Security Policy" in line], log
    finally:
        (out / "console.log").write_text("\n".join(await call("log")) + "\n")  # type: ignore
    for name in ("login", "dashboard", "disabled", "invite"):
        assert (out / f"{name}.png").stat().st_size > 1000
