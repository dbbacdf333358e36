"""XEP-0115 entity capabilities as PEP needs them: the verification string of a disco#info
answer (§5.1, with extended forms, §5.4) and the ``+notify`` interests it declares
(XEP-0163 §4.3)."""

from __future__ import annotations

import base64
import hashlib

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element

HASHES = {"sha-1": "sha1", "sha-224": "sha224", "sha-256": "sha256", "sha-384": "sha384",
          "sha-512": "sha512"}
_XML_LANG = "{" + NS.XML + "}lang"


def verification_string(info: Element) -> str | None:
    """S of XEP-0115 §5.1 for a disco#info ``<query/>``, or None when the answer is one
    §5.4 says must not be used (duplicate identities or features, a form without FORM_TYPE,
    two forms with the same FORM_TYPE)."""
    identities = []
    for i in info.find_all("identity", NS.DISCO_INFO):
        identities.append("/".join((i.attrs.get("category", ""), i.attrs.get("type", ""),
                                    i.attrs.get(_XML_LANG, ""), i.attrs.get("name", ""))))
    if len(set(identities)) != len(identities):
        return None
    features = [f.attrs.get("var", "") for f in info.find_all("feature", NS.DISCO_INFO)]
    if len(set(features)) != len(features):
        return None
    s = "".join(f"{i}<" for i in sorted(identities))
    s += "".join(f"{f}<" for f in sorted(features))
    forms: list[tuple[str, str]] = []
    for x in info.find_all("x", NS.DATA_FORMS):
        if x.attrs.get("type") != "result":
            continue
        form_type: str | None = None
        fields: list[tuple[str, list[str]]] = []
        for f in x.find_all("field", NS.DATA_FORMS):
            var = f.attrs.get("var", "")
            values = [v.text for v in f.find_all("value", NS.DATA_FORMS)]
            if var == "FORM_TYPE":
                if f.attrs.get("type") != "hidden" or len(values) != 1:
                    return None
                form_type = values[0]
            else:
                fields.append((var, sorted(values)))
        if form_type is None:
            return None
        part = f"{form_type}<"
        for var, values in sorted(fields):
            part += f"{var}<" + "".join(f"{v}<" for v in values)
        forms.append((form_type, part))
    types = [t for t, _ in forms]
    if len(set(types)) != len(types):
        return None
    s += "".join(p for _, p in sorted(forms))
    return s


def ver_hash(info: Element, algo: str) -> str | None:
    name = HASHES.get(algo)
    s = verification_string(info)
    if name is None or s is None:
        return None
    return base64.b64encode(hashlib.new(name, s.encode()).digest()).decode()


def interests(info: Element) -> frozenset[str]:
    """Nodes whose notifications the entity asks for (features ``<node>+notify``)."""
    out = set()
    for f in info.find_all("feature", NS.DISCO_INFO):
        var = f.attrs.get("var", "")
        if var.endswith("+notify"):
            out.add(var[:-len("+notify")])
    return frozenset(out)
