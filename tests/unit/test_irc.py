"""The IRC core with bytes alone: lines, tags, registration, SASL PLAIN, limits."""

from __future__ import annotations

import base64

import pytest

from hongyan.irc.connection import Command, IrcConnection, Login, Quit
from hongyan.irc.message import Message, parse_line
from hongyan.server.irc_history import Query, Ref, parse_ref, plan, query_element

LINES = [
    (b"PING :abc", Message("PING", ["abc"])),
    (b"privmsg #room :hello there", Message("PRIVMSG", ["#room", "hello there"])),
    (b":nick!u@h PRIVMSG bob :x", Message("PRIVMSG", ["bob", "x"], "nick!u@h")),
    (b"@time=2026-01-01T00:00:00.000Z;+a=b\\sc\\:d :p JOIN #x",
     Message("JOIN", ["#x"], "p", {"time": "2026-01-01T00:00:00.000Z", "+a": "b c;d"})),
    (b"MODE  #r   +o   bob", Message("MODE", ["#r", "+o", "bob"])),
    (b"TOPIC #r :", Message("TOPIC", ["#r", ""])),
    (b"USER u 0 * :Real Name", Message("USER", ["u", "0", "*", "Real Name"])),
]


@pytest.mark.parametrize(("line", "msg"), LINES)
def test_parse(line: bytes, msg: Message) -> None:
    assert parse_line(line) == msg


SERIALIZED = [
    (Message("PRIVMSG", ["#r", "hi you"], "a!a@h"), b":a!a@h PRIVMSG #r :hi you\r\n"),
    (Message("PRIVMSG", ["#r", "one"], "a"), b":a PRIVMSG #r :one\r\n"),
    (Message("JOIN", ["#r"], "a"), b":a JOIN #r\r\n"),
    (Message("001", ["a", "Welcome"], "s"), b":s 001 a :Welcome\r\n"),
    (Message("TOPIC", ["#r", ""], "a"), b":a TOPIC #r :\r\n"),
    (Message("PRIVMSG", ["b", ":x"]), b"PRIVMSG b ::x\r\n"),
    (Message("PRIVMSG", ["b", "x\r\nQUIT"]), b"PRIVMSG b :x  QUIT\r\n"),
    (Message("JOIN", ["#r"], "a", {"time": "T 1;2"}), b"@time=T\\s1\\:2 :a JOIN #r\r\n"),
]


@pytest.mark.parametrize(("msg", "data"), SERIALIZED)
def test_serialize(msg: Message, data: bytes) -> None:
    assert msg.to_bytes() == data


def test_serialized_body_is_at_most_512_bytes_on_a_utf8_boundary() -> None:
    data = Message("PRIVMSG", ["#r", "é" * 400], "a").to_bytes()
    assert len(data) <= 512 and data.endswith(b"\r\n")
    data[:-2].decode("utf-8")


def conn() -> IrcConnection:
    return IrcConnection("irc.example")


def test_pass_registration_is_a_login_then_the_welcome() -> None:
    c = conn()
    events = c.receive_data(b"PASS alice:secret\r\nNICK al\r\nUSER al 0 * :Al\r\n")
    assert events == [Login("alice", "secret", "", False)]
    assert c.data_to_send() == b""
    c.logged_in("alice")
    out = c.data_to_send()
    assert out.startswith(b":al!al@irc.example NICK alice\r\n")
    assert b":irc.example 001 alice :Welcome" in out
    for code in (b" 002 ", b" 003 ", b" 004 ", b" 005 ", b" 422 "):
        assert code in out
    assert c.registered


def test_pass_without_account_uses_the_user_name() -> None:
    c = conn()
    assert c.receive_data(b"PASS pw\nNICK bob\nUSER bob 0 * :B\n") == [
        Login("bob", "pw", "", False)]


def test_bad_pass_is_464_and_error() -> None:
    c = conn()
    c.receive_data(b"PASS a:b\r\nNICK a\r\nUSER a 0 * :a\r\n")
    c.login_failed()
    assert c.data_to_send() == (b":irc.example 464 a :Password incorrect\r\n"
                                b"ERROR :Closing link: bad password\r\n")
    assert c.closed


def test_no_credentials_is_464() -> None:
    c = conn()
    c.receive_data(b"NICK a\r\nUSER a 0 * :a\r\n")
    out = c.data_to_send()
    assert out.startswith(b":irc.example 464 a :Password required")
    assert out.endswith(b"ERROR :Closing link: authentication required\r\n")


def test_sasl_plain() -> None:
    c = conn()
    assert c.receive_data(b"CAP LS 302\r\nNICK alice\r\nUSER a 0 * :A\r\n") == []
    assert c.data_to_send() == (b":irc.example CAP * LS :account-tag batch draft/chathistory "
                                b"echo-message extended-join message-tags sasl=PLAIN "
                                b"server-time\r\n")
    c.receive_data(b"CAP REQ :sasl server-time\r\n")
    assert c.data_to_send() == b":irc.example CAP alice ACK :sasl server-time\r\n"
    c.receive_data(b"AUTHENTICATE PLAIN\r\n")
    assert c.data_to_send() == b"AUTHENTICATE +\r\n"
    token = base64.b64encode(b"\0alice\0pw")
    assert c.receive_data(b"AUTHENTICATE " + token + b"\r\n") == [
        Login("alice", "pw", "", True)]
    c.logged_in("alice")
    out = c.data_to_send()
    assert b" 900 alice alice!a@irc.example alice :You are now logged in as alice\r\n" in out
    assert out.endswith(b":irc.example 903 alice :SASL authentication successful\r\n")
    assert not c.registered  # until CAP END
    c.receive_data(b"CAP END\r\n")
    assert b" 001 alice " in c.data_to_send()


def test_sasl_failure_is_904_and_may_be_retried() -> None:
    c = conn()
    c.receive_data(b"CAP REQ sasl\r\nAUTHENTICATE PLAIN\r\n")
    c.data_to_send()
    c.receive_data(b"AUTHENTICATE " + base64.b64encode(b"\0a\0b") + b"\r\n")
    c.login_failed()
    assert c.data_to_send() == b":irc.example 904 * :SASL authentication failed\r\n"
    assert not c.closed
    c.receive_data(b"AUTHENTICATE SCRAM-SHA-1\r\n")
    assert c.data_to_send() == (b":irc.example 908 * PLAIN :are available SASL mechanisms\r\n"
                                b":irc.example 904 * :SASL authentication failed\r\n")
    c.receive_data(b"AUTHENTICATE PLAIN\r\nAUTHENTICATE *\r\n")
    assert c.data_to_send().endswith(b" 906 * :SASL authentication aborted\r\n")
    c.receive_data(b"AUTHENTICATE PLAIN\r\nAUTHENTICATE !!!\r\n")
    assert c.data_to_send().endswith(b"904 * :SASL authentication failed: malformed PLAIN "
                                     b"message\r\n")


def registered() -> IrcConnection:
    c = conn()
    c.receive_data(b"PASS alice:pw\r\nNICK alice\r\nUSER a 0 * :A\r\n")
    c.logged_in("alice")
    c.data_to_send()
    return c


def test_ping_pong() -> None:
    c = registered()
    assert c.receive_data(b"PING :tok 1\r\n") == []
    assert c.data_to_send() == b":irc.example PONG irc.example :tok 1\r\n"


def test_unknown_command_is_421_and_missing_params_461() -> None:
    c = registered()
    c.receive_data(b"FROB x\r\nPRIVMSG #r\r\nKICK #r\r\n")
    assert c.data_to_send() == (b":irc.example 421 alice FROB :Unknown command\r\n"
                                b":irc.example 461 alice PRIVMSG :Not enough parameters\r\n"
                                b":irc.example 461 alice KICK :Not enough parameters\r\n")


def test_commands_before_registration_are_451() -> None:
    c = conn()
    c.receive_data(b"JOIN #r\r\n")
    assert c.data_to_send() == b":irc.example 451 * :You have not registered\r\n"


def test_commands_after_registration_are_events() -> None:
    c = registered()
    assert c.receive_data(b"JOIN #r\r\nPRIVMSG #r :hi\r\nQUIT :bye\r\n") == [
        Command(Message("JOIN", ["#r"])), Command(Message("PRIVMSG", ["#r", "hi"])),
        Quit("bye")]
    assert c.data_to_send() == b"ERROR :Closing link: Quit: bye\r\n"
    assert c.receive_data(b"JOIN #x\r\n") == []


def test_overlong_line_is_417_and_the_next_line_is_read() -> None:
    c = registered()
    events = c.receive_data(b"PRIVMSG #r :" + b"x" * 600 + b"\r\nPING a\r\n")
    assert events == []
    assert c.data_to_send() == (b":irc.example 417 alice :Input line was too long\r\n"
                                b":irc.example PONG irc.example a\r\n")


def test_endless_line_is_dropped_as_it_arrives() -> None:
    c = registered()
    for _ in range(100):
        c.receive_data(b"y" * 4096)
    assert len(c._buf) == 0  # bounded: nothing of the endless line is kept
    assert c.data_to_send() == b":irc.example 417 alice :Input line was too long\r\n"
    c.receive_data(b"yyy\r\nPING b\r\n")
    assert c.data_to_send() == b":irc.example PONG irc.example b\r\n"


def test_tags_are_allowed_up_to_their_own_limit() -> None:
    c = registered()
    tags = b"@+x=" + b"a" * 1000 + b" "
    assert c.receive_data(tags + b"PRIVMSG #r :" + b"z" * 400 + b"\r\n") != []
    c.receive_data(b"@+x=" + b"a" * 5000 + b" PING a\r\n")
    assert c.data_to_send() == b":irc.example 417 alice :Input line was too long\r\n"


def test_split_lines_are_joined() -> None:
    c = registered()
    assert c.receive_data(b"PRIVMSG #r :he") == []
    assert c.receive_data(b"llo\r") == []
    assert c.receive_data(b"\n") == [Command(Message("PRIVMSG", ["#r", "hello"]))]


def test_tags_sent_only_with_their_capability() -> None:
    c = registered()
    c.send(Message("PRIVMSG", ["alice", "x"], "b", {"time": "T", "msgid": "1"}))
    assert c.data_to_send() == b":b PRIVMSG alice :x\r\n"
    c.caps.add("server-time")
    c.send(Message("PRIVMSG", ["alice", "x"], "b", {"time": "T", "msgid": "1"}))
    assert c.data_to_send() == b"@time=T :b PRIVMSG alice :x\r\n"


def test_bad_nick_is_432() -> None:
    c = conn()
    c.receive_data(b"NICK 9abc\r\nNICK a b\r\n")
    assert c.data_to_send().startswith(b":irc.example 432 * 9abc :Erroneous nickname\r\n")


def test_lines_past_the_budget_are_excess_flood() -> None:
    c = registered()
    events = c.receive_data(b"PRIVMSG #r :x\r\n" * 10, budget=4)
    assert len(events) == 4 and c.closed
    assert c.data_to_send() == b"ERROR :Closing link: Excess Flood\r\n"
    c2 = registered()
    assert len(c2.receive_data(b"PRIVMSG #r :x\r\n" * 10, budget=10)) == 10
    assert c2.lines == 10 and not c2.closed


def test_a_lone_parameter_is_not_made_trailing() -> None:
    assert Message("PART", ["#r"], "a").to_bytes() == b":a PART #r\r\n"
    assert Message("PART", ["#r", "bye"], "a").to_bytes() == b":a PART #r :bye\r\n"


def test_five_failed_sasl_logins_end_the_connection() -> None:
    c = conn()
    c.receive_data(b"CAP REQ sasl\r\n")
    for _ in range(5):
        c.receive_data(b"AUTHENTICATE PLAIN\r\nAUTHENTICATE " + base64.b64encode(b"\0a\0b")
                       + b"\r\n")
        c.login_failed()
    assert c.closed
    assert c.data_to_send().endswith(b"ERROR :Closing link: too many failed logins\r\n")


def test_isupport_names_chathistory_and_its_reference_types() -> None:
    c = IrcConnection("irc.example", chathistory=42)
    c.receive_data(b"PASS alice:pw\r\nNICK alice\r\nUSER a 0 * :A\r\n")
    c.logged_in("alice")
    out = c.data_to_send()
    assert (b" CHANNELLEN=64 CHATHISTORY=42 MSGREFTYPES=msgid,timestamp :are supported by "
            b"this server\r\n") in out
    # the maximum survives a move to another worker
    assert IrcConnection.restore(c.export()).chathistory == 42


def test_batch_and_account_tags_need_their_capabilities() -> None:
    c = registered()
    c.caps.update({"server-time", "message-tags"})
    tags = {"time": "T", "batch": "1", "account": "bob"}
    c.send(Message("PRIVMSG", ["#r", "x"], "b", tags))
    assert c.data_to_send() == b"@time=T :b PRIVMSG #r :x\r\n"
    c.caps.add("batch")
    c.send(Message("PRIVMSG", ["#r", "x"], "b", tags))
    assert c.data_to_send() == b"@time=T;batch=1 :b PRIVMSG #r :x\r\n"
    c.caps.add("account-tag")
    c.send(Message("PRIVMSG", ["#r", "x"], "b", tags))
    assert c.data_to_send() == b"@time=T;batch=1;account=bob :b PRIVMSG #r :x\r\n"


def test_new_capabilities_may_be_requested() -> None:
    c = conn()
    c.receive_data(b"CAP REQ :batch echo-message draft/chathistory\r\n")
    assert c.data_to_send() == (b":irc.example CAP * ACK :batch echo-message "
                                b"draft/chathistory\r\n")
    assert {"batch", "echo-message", "draft/chathistory"} <= c.caps


def test_chathistory_is_a_command_and_fail_ends_with_text() -> None:
    c = registered()
    assert c.receive_data(b"CHATHISTORY LATEST #r * 10\r\n") == [
        Command(Message("CHATHISTORY", ["LATEST", "#r", "*", "10"]))]
    assert Message("FAIL", ["CHATHISTORY", "INVALID_PARAMS", "LATEST", "Bad"], "s"
                   ).to_bytes() == b":s FAIL CHATHISTORY INVALID_PARAMS LATEST :Bad\r\n"


MS = 1_796_695_606_858_000  # 2026-12-08T02:06:46.858Z in microseconds
REFS = [
    ("*", Ref("*")),
    ("msgid=1796695606858819", Ref("msgid", "1796695606858819", 1796695606858819)),
    ("msgid=abc", Ref("msgid", "abc", -1)),
    ("timestamp=2026-12-08T02:06:46.858Z", Ref("timestamp", "2026-12-08T02:06:46.858Z", MS)),
    ("timestamp=yesterday", None),
    ("when=now", None),
    ("msgid=", None),
]


@pytest.mark.parametrize(("text", "ref"), REFS)
def test_chathistory_refs(text: str, ref: Ref | None) -> None:
    assert parse_ref(text) == ref


def r(text: str) -> Ref:
    ref = parse_ref(text)
    assert ref is not None
    return ref


PLANS = [
    ("LATEST", ["*"], Query(10, before="")),
    ("LATEST", ["msgid=5"], Query(10, {"after-id": "5"}, before="")),
    ("LATEST", ["timestamp=2026-12-08T02:06:46.858Z"],
     Query(10, {"start": "2026-12-08T02:06:46.859000Z"}, before="")),
    ("BEFORE", ["msgid=5"], Query(10, before="5")),
    ("BEFORE", ["timestamp=2026-12-08T02:06:46.858Z"],
     Query(10, {"end": "2026-12-08T02:06:46.857999Z"}, before="")),
    ("AFTER", ["msgid=5"], Query(10, after="5")),
    ("AFTER", ["timestamp=2026-12-08T02:06:46.858Z"],
     Query(10, {"start": "2026-12-08T02:06:46.859000Z"})),
    ("AROUND", ["msgid=5"], Query(5, before="5")),
    ("BETWEEN", ["msgid=5", "msgid=9"], Query(10, {"before-id": "9"}, after="5")),
    ("BETWEEN", ["msgid=9", "msgid=5"], Query(10, {"after-id": "5"}, before="9")),
    ("BETWEEN", ["timestamp=2026-12-08T02:06:46.858Z", "msgid=1896695606858000"],
     Query(10, {"start": "2026-12-08T02:06:46.859000Z", "before-id": "1896695606858000"})),
    ("BEFORE", ["*"], None),
    ("AROUND", ["*"], None),
    ("BETWEEN", ["msgid=5", "*"], None),
    ("BETWEEN", ["msgid=x", "msgid=5"], None),
]


@pytest.mark.parametrize(("sub", "refs", "query"), PLANS)
def test_chathistory_plans(sub: str, refs: list[str], query: Query | None) -> None:
    assert plan(sub, [r(t) for t in refs], 10) == query


def test_chathistory_query_element() -> None:
    iq = query_element(Query(3, {"with": "bob@localhost"}, before=""), "q1", None)
    text = iq.to_str()
    for part in ("<iq type='set' id='q1'>", "<query xmlns='urn:xmpp:mam:2' queryid='q1'>",
                 "<field var='with'><value>bob@localhost</value></field>",
                 "<max>3</max><before/></set>"):
        assert part in text
