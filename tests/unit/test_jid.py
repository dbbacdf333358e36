"""RFC 7622 JIDs as string tables."""

from __future__ import annotations

import pytest

from hongyan.xmpp.jid import JID, JIDError, prepare_localpart, prepare_resource

VALID = [
    ("juliet@example.com", ("juliet", "example.com", "")),
    ("juliet@example.com/foo", ("juliet", "example.com", "foo")),
    ("juliet@example.com/foo bar", ("juliet", "example.com", "foo bar")),
    ("juliet@example.com/foo@bar", ("juliet", "example.com", "foo@bar")),
    ("foo\\20bar@example.com", ("foo\\20bar", "example.com", "")),
    ("fussball@example.com", ("fussball", "example.com", "")),
    ("fußball@example.com", ("fußball", "example.com", "")),
    ("π@example.com", ("π", "example.com", "")),
    ("Σ@example.com/foo", ("\u03c3", "example.com", "foo")),
    ("Juliet@EXAMPLE.com/Balcony", ("juliet", "example.com", "Balcony")),
    ("example.com", ("", "example.com", "")),
    ("example.com/foobar", ("", "example.com", "foobar")),
    ("a.example.com/b@example.net", ("", "a.example.com", "b@example.net")),
    ("example.com.", ("", "example.com", "")),
    ("x@[::1]", ("x", "[::1]", "")),
    ("x@127.0.0.1/r", ("x", "127.0.0.1", "r")),
    ("user@münchen.de", ("user", "münchen.de", "")),
    ("a@b/c/d", ("a", "b", "c/d")),
    ("x@[2001:DB8:0:0::1]", ("x", "[2001:db8::1]", "")),
    ("x@xn--mnchen-3ya.de", ("x", "münchen.de", "")),        # A-label -> U-label
    ("x@XN--MNCHEN-3YA.DE.", ("x", "münchen.de", "")),
    ("x@MÜNCHEN.de", ("x", "münchen.de", "")),
    ("x@xn--strae-oqa.de", ("x", "straße.de", "")),
    ("x@" + "a" * 63 + ".com", ("x", "a" * 63 + ".com", "")),
    ("x" * 1023 + "@example.com", ("x" * 1023, "example.com", "")),
    ("a@example.com/" + "r" * 1023, ("a", "example.com", "r" * 1023)),
    ("\u00e9@example.com", ("\u00e9", "example.com", "")),
    ("E\u0301@example.com", ("\u00e9", "example.com", "")),  # NFC, then case-mapped
]

INVALID = [
    "",
    "\"juliet\"@example.com",
    "foo bar@example.com",
    "juliet@example.com/ foo",
    "@example.com/",
    "henryⅣ@example.com",
    "♚@example.com",
    "juliet@",
    "/foobar",
    "@example.com",
    "a@b/",
    "a@b@c",
    "a@-bad.com",
    "a@bad-.com",
    "a@ex ample.com",
    "a@[::zz]",
    "a@" + "x" * 64 + ".com",
    "x" * 1024 + "@example.com",
    "a@example.com/" + "r" * 1024,
    "é" * 512 + "@example.com",         # 1024 bytes in UTF-8
    "a@b@c/d",
    "a@[fe80::1%eth0]",                 # no zone identifiers
    "a@[127.0.0.1]",
    "a@1.2.3.256",
    "a@example.com..",
    "a@.",
    "a@.example.com",
    "a@ex_ample.com",
    "a@xn--zz.de",                      # undecodable A-label
    "a@xn--a.de",                       # decodes to a control character
    "a@example.com/\u0007",
    "a\u0000b@example.com",
]


@pytest.mark.parametrize(("text", "parts"), VALID)
def test_valid(text: str, parts: tuple[str, str, str]) -> None:
    jid = JID.parse(text)
    assert (jid.local, jid.domain, jid.resource) == parts


@pytest.mark.parametrize("text", INVALID)
def test_invalid(text: str) -> None:
    with pytest.raises(JIDError):
        JID.parse(text)


def test_bare_equality_and_hash() -> None:
    a = JID.parse("Romeo@Example.net/orchard")
    b = JID.parse("romeo@example.net/orchard")
    assert a == b and hash(a) == hash(b)
    assert a.bare == JID.parse("romeo@example.net")
    assert a.bare_str == "romeo@example.net"
    assert str(a) == "romeo@example.net/orchard"
    assert not a.is_bare and a.bare.is_bare
    assert JID.parse("example.net").is_domain
    assert a.domain_jid == JID.parse("example.net")
    assert a.bare.with_resource("balcony") == JID.parse("romeo@example.net/balcony")
    assert {a, b} == {a}
    bare = a.bare
    assert bare.bare is bare


def test_parts_and_helpers() -> None:
    assert JID.parse("x@xn--mnchen-3ya.de") == JID.parse("x@münchen.de")
    assert prepare_localpart("Juliet") == "juliet"
    assert prepare_resource("Balcony") == "Balcony"
    for bad in ("", "a b", "a@b", "a:b"):
        with pytest.raises(JIDError):
            prepare_localpart(bad)
    with pytest.raises(JIDError):
        prepare_resource("")
    with pytest.raises(JIDError):
        JID.parse("a@b").with_resource("")
    j = JID("a", "b", "c")
    assert repr(j) == "JID('a@b/c')" and str(j.domain_jid) == "b" and not j.domain_jid.local
