"""The [push] section of the config file: push notifications (XEP-0357)."""

from __future__ import annotations

from pydantic import Field

from hongyan.config.schema import Section


class PushOptions(Section):
    section = "push"

    include_body: bool = Field(False, description="put the message body in XEP-0357 "
                               "notifications (last-message-body); it then passes through the "
                               "app server and the phone vendor's push service")
    include_sender: bool = Field(True, description="put the sender's JID in notifications "
                                 "(last-message-sender)")
    timeout: float = Field(10.0, gt=0, le=300, description="seconds to wait for the app "
                           "server's answer to a notification")
    retries: int = Field(2, ge=0, le=10, description="times a notification is sent again "
                         "after a timeout or a temporary (type wait) error")
    retry_delay: float = Field(5.0, ge=0, le=3600, description="seconds before the first "
                               "retry; doubled for each further one")
    max_per_user: int = Field(20, ge=1, le=1000, description="push registrations one "
                              "account may keep (one per device and app server node)")


OPTIONS = PushOptions
