"""The [eventstream] section of the config file: selected events published to Redis Streams
and NATS JetStream (off by default)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from hongyan.config.schema import Section

EventKind = Literal["message", "presence", "login", "logout", "room"]
ALL_KINDS: tuple[EventKind, ...] = ("message", "presence", "login", "logout", "room")


class EventStreamOptions(Section):
    section = "eventstream"

    enabled: bool = Field(False, description="publish events to the brokers below")
    events: list[EventKind] = Field(default_factory=lambda: list(ALL_KINDS),
                                    description="which events: message (1:1 message routed "
                                    "to a local user), presence, login, logout, room (join, "
                                    "leave, groupchat message)")
    include_body: bool = Field(False, description="add a message's <body> text to message "
                               "and room message events (off: sender, recipient, time and "
                               "size only)")
    redis_url: str = Field("", description="redis://host:port/db: XADD to redis_stream "
                           "(empty = no Redis)")
    redis_stream: str = Field("hongyan:events", description="the Redis stream's key")
    redis_maxlen: int = Field(100_000, ge=1, description="entries the stream keeps "
                              "(XADD MAXLEN ~, approximate trimming)")
    nats_url: str = Field("", description="nats://host:port: publish to JetStream on "
                          "<nats_subject>.<event> (empty = no NATS); the stream that "
                          "stores those subjects is the operator's to create")
    nats_subject: str = Field("hongyan.events", description="the subjects' prefix")
    queue_size: int = Field(10_000, ge=1, le=10_000_000, description="events waiting per "
                            "broker; past it new events are dropped (and counted)")
    batch_size: int = Field(500, ge=1, le=100_000, description="events sent at once")
    timeout: float = Field(5.0, gt=0, description="seconds a broker may take to connect "
                           "or to take a batch before it counts as down")
    backoff_max: float = Field(30.0, ge=0.1, description="seconds at most between two "
                               "reconnection attempts (doubling from 0.1 s)")

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, v: str) -> str:
        if v and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v

    @field_validator("nats_url")
    @classmethod
    def _nats(cls, v: str) -> str:
        if v and not v.startswith(("nats://", "tls://")):
            raise ValueError("must start with nats:// or tls://")
        return v

    @field_validator("nats_subject")
    @classmethod
    def _subject(cls, v: str) -> str:
        parts = v.split(".")
        if not v or any(not p or any(c in p for c in " *>\t\r\n") for p in parts):
            raise ValueError(f"not a NATS subject prefix (tokens without wildcards): {v!r}")
        return v


OPTIONS = EventStreamOptions
