"""The invitation page in a real browser (headless Debian Chromium driven by playwright-core,
``tests/integration/browser.py``): a newcomer opens the invitation's address, sees the one-tap
``xmpp:`` link, fills the form and gets the account, with the inviter's slixmpp client seeing
the roster push. The page's own CSP, cookie and origin check are what the browser obeys."""

from __future__ import annotations

from pathlib import Path

from tests.integration.browser import Browsers, artifacts_dir
from tests.integration.conftest import Harness
from tests.integration.invites import CONFIG
from tests.integration.test_adhoc import can_login
from tests.integration.test_im import roster_push, track_pushes


async def test_a_newcomer_signs_up_on_the_invitation_page(harness: Harness, browsers: Browsers,
                                                          tmp_path: Path) -> None:
    await harness.stop_node()
    node = await harness.start(extra=CONFIG)
    romeo = track_pushes(await harness.logged_in("romeo"))
    made = await node.modules["invites"].service.create(inviter="romeo")  # type: ignore
    out = artifacts_dir(tmp_path, "invite-page")
    name = "juliet"

    async def call(cmd: str, **kw: object) -> object:
        return await browsers.call(cmd, name=name, **kw)

    try:
        opened = await call("open", url=f"http://127.0.0.1:{node.http_port}/invite/"
                                        f"{made.token}")
        assert opened["status"] == 200  # type: ignore[index]
        href = await call("eval", expression="document.querySelector('a.button')"
                                             ".getAttribute('href')")
        assert href == f"xmpp:localhost?register;preauth={made.token}"
        await call("fill", selector="input[name=username]", value="juliet")
        await call("fill", selector="input[name=password]", value="balcony-pw")
        await call("fill", selector="input[name=password2]", value="balcony-pw")
        await call("screenshot", path=str(out / "form.png"))
        await call("click", selector="button[type=submit]")
        await call("wait", selector="h1", text="Welcome, juliet@localhost!")
        await call("screenshot", path=str(out / "welcome.png"))
        push = await roster_push(romeo)
        assert push == {"jid": "juliet@localhost", "subscription": "both"}
        assert await can_login(harness, "juliet@localhost", "balcony-pw")
    finally:
        (out / "console.log").write_text("\n".join(await call("log")) + "\n")  # type: ignore
