"""The [muc] section: defaults and the mistakes it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from hongyan.config.loader import ConfigError, load_config
from hongyan.modules.muc.options import MucOptions


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "h.toml"
    p.write_text(text)
    return p


def test_muc_defaults(tmp_path: Path) -> None:
    muc = load_config(write(tmp_path, "")).options(MucOptions)
    assert (muc.host, muc.history_size, muc.max_users) == ("", 20, 200)


@pytest.mark.parametrize(("text", "needle"), [
    ('[server]\ndomain = "example.org"\n[muc]\nhost = "example.org"\n', "muc.host"),
    ('[muc]\nhost = "not a domain"\n', "muc.host"),
    ("[muc]\nhistory_size = -1\n", "muc.history_size"),
    ("[muc]\nmax_users = 0\n", "muc.max_users"),
    ('[pubsub]\nhost = "conference.localhost"\n',
     "pubsub.host: conference.localhost is muc.host already"),
])
def test_muc_mistakes(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    assert needle in str(exc.value)
