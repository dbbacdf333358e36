"""Config files: defaults, the shipped example, and every mistake named by key, file and line."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from hongyan.config.loader import ConfigError, check_config, load_config
from hongyan.config.schema import Config

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "h.toml"
    p.write_text(text)
    return p


def test_defaults() -> None:
    cfg = load_config(None)
    assert cfg.server.domain == "localhost"
    assert cfg.c2s.port == 5222 and cfg.c2s.direct_tls_port == 5223
    assert (cfg.http.port, cfg.http.tls, cfg.http.tls_port) == (5280, True, 5281)
    assert cfg.http.trusted_proxies == [] and cfg.http.websocket_origins == []
    assert cfg.storage.url.startswith("sqlite:///")
    assert cfg.registration_enabled
    assert cfg.c2s.max_stanza_size == 262144


def test_example_file_is_the_defaults() -> None:
    assert load_config(ROOT / "hongyan.example.toml") == load_config(None)


@pytest.mark.parametrize(("text", "line", "key", "words"), [
    ("[c2s]\nport = 99999\n", 2, "c2s.port", "less than or equal"),
    ("[c2s]\nport = \"x\"\n", 2, "c2s.port", "integer"),
    ("[server]\ndomain = \"ok\"\n\n[c2s]\n# comment\nbogus = 1\n", 6, "c2s.bogus", "unknown"),
    ("[nonsense]\na = 1\n", 1, "nonsense", "unknown"),
    ("c2s.port = -1\n", 1, "c2s.port", "greater than or equal"),
    ("c2s = { port = 70000 }\n", 1, "c2s.port", "less than"),
    ("[tls]\ncert_file = \"a.pem\"\n", 1, "tls", "both"),
    ("[storage]\nurl = \"mysql://x\"\n", 2, "storage.url", "sqlite://"),
    ("[server]\ndomain = \"not a domain\"\n", 2, "server.domain", "DNS name"),
    ("[http]\nport = 99999\n", 2, "http.port", "less than or equal"),
    ("[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.lan\"]\n", 2, "http.trusted_proxies",
     "not an IP address or network"),
    ("[http]\nwebsocket_origins = [\"chat.example.org\"]\n", 2, "http.websocket_origins",
     "not an origin"),
    ("[http]\nwebsocket_ping = -1\n", 2, "http.websocket_ping", "greater than or equal"),
    ("[hostmeta]\nwebsocket_url = \"https://chat.example.org/ws\"\n", 2,
     "hostmeta.websocket_url", "not a ws:// or wss:// URL"),
    ("[hostmeta]\nbosh_url = \"wss://chat.example.org/ws\"\n", 2,
     "hostmeta.bosh_url", "not an http:// or https:// URL"),
    ("[http]\nbosh_max_hold = 9\n", 2, "http.bosh_max_hold", "less than or equal"),
    ("[server]\nadmins = [\"root@localhost/phone\"]\n", 2, "server.admins", "bare JID"),
    ("[pubsub]\ncreate_nodes = \"everyone\"\n", 2, "pubsub.create_nodes", "admins"),
    ("[auth]\nmechanisms = [\n  \"PLAIN\",\n  \"MD5\",\n]\n", 2, "auth.mechanisms", "PLAIN"),
    ("[s2s]\nallow = [\"ok.example\", \"not a domain\"]\n", 2, "s2s.allow",
     "not a valid domain"),
    ("[s2s]\nallow = [\"x.example\"]\ndeny = [\"x.example\"]\n", 1, "s2s",
     "in both allow and deny"),
    ("[s2s]\nca_file = \"/no/such/ca.pem\"\n", 2, "s2s.ca_file", "no such file"),
    ("[s2s]\nroutes = { \"b.example\" = \"10.0.0.1\" }\n", 2, "s2s.routes.b.example",
     "host:port"),
    ("[s2s]\nrequire_valid_certificates = \"maybe\"\n", 2, "s2s.require_valid_certificates",
     "boolean"),
    ("[[extdisco.service]]\ntype = \"ftp\"\nhost = \"x\"\n", 2, "extdisco.service.type",
     "stun"),
    ("[[extdisco.service]]\ntype = \"turn\"\nhost = \"x\"\nsecret = \"\"\n", 4,
     "extdisco.service.secret", "empty secret"),
    ("[server.contacts]\nabuse = [\"abuse@example.org\"]\n", 2, "server.contacts.abuse",
     "mailto:, xmpp: or https:"),
    ("[server.contacts]\nsecurity = [\"mailto:nobody\"]\n", 2, "server.contacts.security",
     "not a mailto: address"),
    ("[server.contacts]\nadmin = [\"xmpp:a@b@c\"]\n", 2, "server.contacts.admin",
     "not an xmpp: URI"),
    ("[server.contacts]\nsupport = [\"https:/x\"]\n", 2, "server.contacts.support",
     "not an http(s): URL"),
    ("[server.contacts]\nspam = [\"mailto:a@b.example\"]\n", 2, "server.contacts.spam",
     "unknown"),
])
def test_mistakes_name_key_file_and_line(tmp_path: Path, text: str, line: int, key: str,
                                         words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    problems = exc.value.problems
    assert len(problems) == 1, problems
    p = problems[0]
    assert (p.file, p.line, p.key) == (str(path), line, key)
    assert words in p.message
    assert str(p).startswith(f"{path}:{line}: {key}: ")


def test_several_mistakes_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "[c2s]\nport = 0.5\nmax_depth = 1\n[offline]\nquota = -1\n")
    keys = [(p.key, p.line) for p in check_config(path)]
    assert keys == [("c2s.port", 2), ("c2s.max_depth", 3), ("offline.quota", 5)]


def test_toml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\ndomain = \"x\"\nport = = 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems[0].line == 3
    assert "TOML syntax error" in str(exc.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize(("text", "enabled"), [
    ("", True),
    ("[server]\ndomain = \"example.org\"\n", False),
    ("[server]\ndomain = \"example.org\"\n[registration]\nenabled = true\n", True),
    ("[registration]\nenabled = false\n", False),
])
def test_registration_default(tmp_path: Path, text: str, enabled: bool) -> None:
    assert load_config(write(tmp_path, text)).registration_enabled is enabled


def test_a_feature_reads_its_own_section(tmp_path: Path) -> None:
    from hongyan.modules.sm.options import SMOptions

    assert Config().options(SMOptions) == SMOptions()  # no file: the defaults
    cfg = load_config(write(tmp_path, "[sm]\nresume_timeout = 60\n"))
    assert cfg.options(SMOptions).resume_timeout == 60
    assert cfg.options(SMOptions).max_unacked == SMOptions().max_unacked


def _package(root: Path, name: str, features: dict[str, str]) -> None:
    """A package of feature folders; each value is the body of the folder's options.py."""
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for folder, options in features.items():
        (pkg / folder).mkdir()
        (pkg / folder / "__init__.py").write_text("")
        if options:
            (pkg / folder / "options.py").write_text(options)


ALPHA = ("from hongyan.config.schema import Section\n\n"
         "class AlphaOptions(Section):\n    section = 'alpha'\n    level: int = 1\n\n"
         "OPTIONS = AlphaOptions\n")


def test_sections_follow_the_feature_folders(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Each folder of ``modules.package`` brings its section; a folder that is not there has
    none (unless the feature is disabled, when its old section is left alone)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "feats_a", {"alpha": ALPHA, "plain": ""})
    head = '[modules]\npackage = "feats_a"\ndisabled = ["gone"]\n'
    cfg = load_config(write(tmp_path, head + "[alpha]\nlevel = 3\n[gone]\nx = 1\n"))
    alpha = cfg.options(importlib.import_module("feats_a.alpha.options").AlphaOptions)
    assert alpha.level == 3
    problems = check_config(write(tmp_path, head + "[alpha]\nlevel = \"x\"\n[beta]\ny = 2\n"))
    assert [(p.key, p.line) for p in problems] == [("alpha.level", 5), ("beta", 6)]
    assert "feats_a" in problems[1].message


def test_options_named_after_another_folder_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "feats_b", {"beta": ALPHA})
    problems = check_config(write(tmp_path, '[modules]\npackage = "feats_b"\n'))
    assert [p.key for p in problems] == ["modules.package"]
    assert "'beta'" in problems[0].message
