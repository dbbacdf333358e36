"""Upload slots without a server: what a slot request may name, the signed PUT token, and the
paths a download may have."""

from __future__ import annotations

import pytest

from hongyan.modules.upload.slots import (
    BadRequest,
    Slot,
    check_content_type,
    check_filename,
    is_inline,
    new_id,
    parse_path,
    sign,
    verify,
)

KEY = b"k" * 32


def test_a_token_signs_every_field_of_its_slot() -> None:
    slot = Slot(new_id(), "très cool.jpg", 23456, "image/jpeg", 1_900_000_000,
                "romeo@montague.tld")
    token = sign(KEY, slot)
    assert verify(KEY, slot.id, slot.filename, token) == slot
    assert verify(b"x" * 32, slot.id, slot.filename, token) is None
    assert verify(KEY, new_id(), slot.filename, token) is None
    assert verify(KEY, slot.id, "other.jpg", token) is None
    payload, mac = token.split(".")
    for bad in ("", ".", payload, f"{payload}.", f"x{payload}.{mac}", f"{payload}.{mac}x",
                "!!!.???", f"{sign(KEY, Slot(slot.id, slot.filename, 1, '', 0, 'a@b'))[:-1]}"):
        assert verify(KEY, slot.id, slot.filename, bad) is None, bad


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../etc/passwd", "a\\b", "a\0b",
                                  "a\nb", "x\u202etxt.exe", "a" * 256, "é" * 128])
def test_names_a_slot_refuses(name: str) -> None:
    with pytest.raises(BadRequest):
        check_filename(name)


def test_names_a_slot_keeps() -> None:
    assert check_filename("my-juliet.jpg") == "my-juliet.jpg"
    assert check_filename("cafe\u0301 .tar.gz") == "café .tar.gz"  # NFC
    assert check_filename("..hidden") == "..hidden"


def test_content_types() -> None:
    assert check_content_type("") == ""
    assert check_content_type(" Image/PNG ") == "image/png"
    assert check_content_type('text/plain; charset="utf-8"') == 'text/plain; charset="utf-8"'
    for bad in ("png", "a b/c", "text/html\r\nX-Evil: 1", "text/plain; x", "a/" + "b" * 300):
        with pytest.raises(BadRequest):
            check_content_type(bad)
    assert is_inline("image/png") and is_inline("video/mp4") and is_inline("text/plain")
    for active in ("text/html", "image/svg+xml", "application/xml", "text/xml",
                   "application/xhtml+xml", "text/javascript", "application/pdf", ""):
        assert not is_inline(active), active


def test_paths() -> None:
    i = new_id()
    assert parse_path(f"/upload/{i}/a b.txt") == (i, "a b.txt")
    for bad in ("/upload/", f"/upload/{i}", f"/upload/{i}/", f"/upload/{i}/a/b",
                f"/upload/{i}/..", "/upload/short/a.txt", f"/upload/{i[:-1]}./a.txt",
                f"/other/{i}/a.txt", f"/upload/{i}/a\0.txt"):
        assert parse_path(bad) is None, bad
