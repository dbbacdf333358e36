"""The [emaildigest] section of the config file: offline messages by e-mail (off by
default)."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator, model_validator

from hongyan.config.schema import Section

#: an e-mail address as this feature accepts it: one mailbox, nothing a header could be
#: split on (no spaces, quotes, angle brackets, commas or line breaks)
EMAIL = re.compile(r"^[^@\s<>\"',;:()\[\]\\]{1,64}@[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_BARE = re.compile(r"^[^@/\s]+@[^@/\s]+$")


def email_address(v: str) -> str:
    v = v.strip()
    if not EMAIL.match(v):
        raise ValueError(f"not an e-mail address: {v!r}")
    return v


class EmailDigestOptions(Section):
    section = "emaildigest"

    enabled: bool = Field(False, description="mail a digest of waiting offline messages to "
                          "users who asked for it")
    delay: float = Field(3600.0, ge=1, description="seconds a message waits offline before "
                         "its user is mailed")
    min_interval: float = Field(21600.0, ge=0, description="seconds at least between two "
                                "digests to one user")
    users: dict[str, str] = Field(default_factory=dict, description="bare JID -> e-mail "
                                  "address: users the administrator opts in (without "
                                  "message text unless the user allows it)")
    smtp_host: str = Field("localhost", description="the SMTP server (submission)")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_starttls: bool = Field(True, description="require STARTTLS before AUTH and the "
                                "message")
    smtp_ca_file: str = Field("", description="PEM CA bundle the SMTP server's certificate "
                              "is checked against (empty: the system's)")
    smtp_username: str = Field("", description="AUTH user (empty: no AUTH)")
    smtp_password: SecretStr = Field(SecretStr(""))
    smtp_timeout: float = Field(30.0, gt=0)
    from_address: str = Field("", description="the digests' From: (empty: "
                              "noreply@<server.domain>)")
    reply_to: str = Field("", description="the digests' Reply-To: a mailbox of the "
                          "operator's (empty: none); never a sender's address")

    @field_validator("from_address", "reply_to")
    @classmethod
    def _address(cls, v: str) -> str:
        return email_address(v) if v else v

    @field_validator("users")
    @classmethod
    def _users(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for jid, addr in v.items():
            if not _BARE.match(jid):
                raise ValueError(f"{jid!r} is not a bare JID (user@domain)")
            out[jid.lower()] = email_address(addr)
        return out

    @model_validator(mode="after")
    def _auth(self) -> EmailDigestOptions:
        if self.smtp_username and not self.smtp_password.get_secret_value():
            raise ValueError("smtp_username needs smtp_password")
        return self


OPTIONS = EmailDigestOptions
