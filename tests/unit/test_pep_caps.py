"""XEP-0115 verification strings and hashes (the XEP's own examples, §5.2 and §5.3), and the
+notify interests PEP reads from a disco#info answer."""

from __future__ import annotations

from hongyan.modules.pep.caps import interests, ver_hash, verification_string
from hongyan.xmpp.parser import parse_element

DISCO = "http://jabber.org/protocol/disco#info"

SIMPLE = f"""<query xmlns='{DISCO}'>
  <identity category='client' name='Exodus 0.9.1' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
</query>"""

COMPLEX = f"""<query xmlns='{DISCO}'>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
    <field var='ip_version' type='text-multi'><value>ipv4</value><value>ipv6</value></field>
    <field var='os'><value>Mac</value></field>
    <field var='os_version'><value>10.5.1</value></field>
    <field var='software'><value>Psi</value></field>
    <field var='software_version'><value>0.11</value></field>
  </x>
</query>"""


def test_simple_example() -> None:
    info = parse_element(SIMPLE)
    assert verification_string(info) == (
        "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<"
        "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
        "http://jabber.org/protocol/muc<")
    assert ver_hash(info, "sha-1") == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_complex_example_with_form_and_languages() -> None:
    assert ver_hash(parse_element(COMPLEX), "sha-1") == "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_malformed_answers_are_not_hashed() -> None:
    dup = SIMPLE.replace("</query>", "<feature var='http://jabber.org/protocol/muc'/></query>")
    assert ver_hash(parse_element(dup), "sha-1") is None
    assert ver_hash(parse_element(SIMPLE), "md5") is None


def test_notify_interests() -> None:
    info = parse_element(SIMPLE.replace(
        "</query>", "<feature var='urn:xmpp:avatar:metadata+notify'/>"
        "<feature var='eu.siacs.conversations.axolotl.devicelist+notify'/></query>"))
    assert interests(info) == {"urn:xmpp:avatar:metadata",
                               "eu.siacs.conversations.axolotl.devicelist"}
