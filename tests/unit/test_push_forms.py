"""XEP-0357 payloads without sockets: which messages are worth a notification, the summary
form, and the publish IQ with its publish-options."""

from __future__ import annotations

from hongyan.modules.push import (
    PUBLISH_OPTIONS,
    Registration,
    form_type,
    publish_iq,
    summary_form,
    worth_notifying,
)
from hongyan.xmpp.parser import parse_element


def msg(inner: str, mtype: str = "chat") -> tuple[bool, str | None]:
    return worth_notifying(parse_element(
        f"<message xmlns='jabber:client' type='{mtype}' from='b@x/r'>{inner}</message>"))


def test_worth_notifying() -> None:
    assert msg("<body>hi</body>") == (True, "hi")
    assert msg("<body>hi</body>", "normal") == (True, "hi")
    assert msg("<body>hi</body>", "groupchat") == (False, None)
    assert msg("<body>hi</body>", "headline") == (False, None)
    assert msg("<body>hi</body>", "error") == (False, None)
    assert msg("<active xmlns='http://jabber.org/protocol/chatstates'/>") == (False, None)
    assert msg("<received xmlns='urn:xmpp:receipts' id='1'/>") == (False, None)
    assert msg("<displayed xmlns='urn:xmpp:chat-markers:0' id='1'/>") == (False, None)
    # encrypted: notified, the fallback body is not shown
    assert msg("<body>fallback</body><encrypted xmlns='urn:xmpp:omemo:2'/>") == (True, None)
    assert msg("<encrypted xmlns='eu.siacs.conversations.axolotl'/>") == (True, None)
    # a call and a file link without a body
    assert msg("<propose xmlns='urn:xmpp:jingle-message:0' id='c'/>") == (True, None)
    assert msg("<x xmlns='jabber:x:oob'><url>https://x/f.jpg</url></x>") == (True, None)
    # a carbon copy wraps the message: the wrapper itself has no body
    assert msg("<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
               "<message xmlns='jabber:client'><body>x</body></message></forwarded>"
               "</received>") == (False, None)


def test_summary_form_leaves_out_what_is_not_given() -> None:
    x = summary_form(3, "b@x/r", None)
    assert form_type(x) == "urn:xmpp:push:summary" and x.attrs["type"] == "submit"
    fields = {f.attrs["var"]: f.find_text("value") for f in x.find_all("field")}
    assert fields == {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "3",
                      "last-message-sender": "b@x/r"}
    fields = {f.attrs["var"]: f.find_text("value")
              for f in summary_form(1, None, "a < b").find_all("field")}
    assert fields["last-message-body"] == "a < b" and "last-message-sender" not in fields
    # subscription requests only: no message-count
    fields = {f.attrs["var"]: f.find_text("value")
              for f in summary_form(0, None, None, subs=2).find_all("field")}
    assert fields == {"FORM_TYPE": "urn:xmpp:push:summary", "pending-subscription-count": "2"}


def test_publish_iq() -> None:
    options = parse_element(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
        f"<value>{PUBLISH_OPTIONS}</value></field><field var='secret'><value>s</value></field>"
        "</x>")
    iq = publish_iq("alice@x", Registration("push.example", "dev1", options),
                    summary_form(1, None, None), "id1")
    xml = iq.to_str()
    assert xml.startswith("<iq type='set' from='alice@x' to='push.example' id='id1'>")
    again = parse_element(iq.to_str(""))
    pubsub = again.find("pubsub", "http://jabber.org/protocol/pubsub")
    assert pubsub is not None
    publish = pubsub.find("publish")
    assert publish is not None and publish.attrs["node"] == "dev1"
    item = publish.find("item")
    assert item is not None and item.find("notification", "urn:xmpp:push:0") is not None
    po = pubsub.find("publish-options")
    assert po is not None and po.first is not None and form_type(po.first) == PUBLISH_OPTIONS
    # without options, no publish-options element
    bare = publish_iq("alice@x", Registration("push.example", "dev1", None),
                      summary_form(1, None, None), "id2")
    assert b"publish-options" not in bare.to_bytes()
