"""The [upload] section of the config file: HTTP File Upload (XEP-0363)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from hongyan.config.schema import Section, ServiceHost

MiB = 1024 * 1024


class UploadOptions(Section):
    section = "upload"

    host: ServiceHost = Field("", description="the upload service's domain; empty = "
                              "upload.<server.domain>. Switch it off with [modules] "
                              "disabled = [\"upload\"]")
    public_url: str = Field("", description="the base of the PUT and GET URLs "
                            "(https://upload.example.org, as a reverse proxy publishes the "
                            "HTTP listener); empty = the listener's own: https://<domain>:"
                            "<https port>, or http:// when HTTPS is off")
    max_file_size: int = Field(100 * MiB, ge=1, description="bytes one file may have "
                               "(disco#info tells clients)")
    quota_per_user: int = Field(1024 * MiB, ge=0, description="bytes one user's files may "
                                "hold together (0 = no limit)")
    quota_total: int = Field(10 * 1024 * MiB, ge=0, description="bytes all files may hold "
                             "together (0 = no limit)")
    slot_timeout: float = Field(300.0, ge=10, le=86400, description="seconds a slot's PUT "
                                "URL may start an upload")
    expire_days: float = Field(30.0, ge=0, description="days after which an uploaded file is "
                               "deleted (0 = kept until its owner's account is deleted)")
    cleanup_interval: float = Field(3600.0, ge=1, description="seconds between the deletions "
                                    "of expired files")
    put_idle_timeout: float = Field(30.0, gt=0, le=3600, description="seconds a PUT's body "
                                    "may go without a byte before the upload is cut off "
                                    "(408) and its partial data deleted")
    put_timeout: float = Field(3600.0, gt=0, le=86400, description="seconds a PUT's whole "
                               "body may take (408 past it); also the age past which a "
                               "leftover .part file is deleted")
    allowed_domains: list[str] = Field(default_factory=list, description="other domains whose "
                                       "users may upload here; the server's own always may")

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", v):
            raise ValueError(f"not an http:// or https:// URL: {v!r}")
        return v

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        return [d.strip().lower() for d in v if d.strip()]

    def host_for(self, domain: str) -> str:
        return self.host or f"upload.{domain}"

    def services(self, domain: str) -> dict[str, str]:
        return {"host": self.host_for(domain)}


OPTIONS = UploadOptions
