"""XML namespaces used across the protocol core and the modules."""

from __future__ import annotations

STREAM = "http://etherx.jabber.org/streams"
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"  # RFC 7395, XMPP over WebSocket
CLIENT = "jabber:client"
COMPONENT = "jabber:component:accept"  # XEP-0114, a component connecting to the server
SERVER = "jabber:server"
DIALBACK = "jabber:server:dialback"  # XEP-0220
DIALBACK_FEATURE = "urn:xmpp:features:dialback"
XML = "http://www.w3.org/XML/1998/namespace"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION = "urn:ietf:params:xml:ns:xmpp-session"
STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
ROSTER = "jabber:iq:roster"
ROSTERVER = "urn:xmpp:features:rosterver"
PRE_APPROVAL = "urn:xmpp:features:pre-approval"
REGISTER = "jabber:iq:register"
REGISTER_FEATURE = "http://jabber.org/features/iq-register"
#: XEP-0379 / XEP-0445: the pre-authentication token element, and the stream features that
#: say in-band registration takes one (the name XEP-0445 0.2 gave it, and the current one)
PARS = "urn:xmpp:pars:0"
IBR_TOKEN_FEATURES = ("urn:xmpp:invite", "urn:xmpp:ibr-token:0")
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
CAPS = "http://jabber.org/protocol/caps"
PING = "urn:xmpp:ping"
VERSION = "jabber:iq:version"
TIME = "urn:xmpp:time"
VCARD = "vcard-temp"
VCARD_UPDATE = "vcard-temp:x:update"
LAST = "jabber:iq:last"
PRIVATE = "jabber:iq:private"
BLOCKING = "urn:xmpp:blocking"
BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
DELAY = "urn:xmpp:delay"
OFFLINE = "msgoffline"
DATA_FORMS = "jabber:x:data"
SASL_CB = "urn:xmpp:sasl-cb:0"
SM = "urn:xmpp:sm:3"
CSI = "urn:xmpp:csi:0"
CHATSTATES = "http://jabber.org/protocol/chatstates"
