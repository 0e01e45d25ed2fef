"""escape_bytes/escape_text: one control-free line for any bytes, unambiguous, readable when plain."""

import pytest

from procsock.text import escape_bytes, escape_text


@pytest.mark.parametrize(
    "raw, shown",
    [
        (b"/run/dbus/system_bus_socket", "/run/dbus/system_bus_socket"),
        (b"/tmp/with space", "/tmp/with space"),
        (b"/tmp/a\nb", "/tmp/a\\nb"),
        (b"\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        (b"back\\slash", "back\\\\slash"),
        (b"bad\xffbyte", "bad\\xffbyte"),
        (b"nul\x00inside", "nul\\x00inside"),
        ("caf\u00e9".encode(), "caf\u00e9"),
        ("rlo\u202eevil".encode(), "rlo\\u202eevil"),
        ("line\u2028sep".encode(), "line\\u2028sep"),
        (b"\x7f\xc2\x85", "\\x7f\\x85"),
        (b"", ""),
    ],
)
def test_escape_bytes(raw, shown):
    assert escape_bytes(raw) == shown


def test_escaped_text_is_always_printable_and_single_line():
    every_byte = bytes(range(256))
    shown = escape_bytes(every_byte)
    assert shown.isprintable()
    assert "\n" not in shown and "\x1b" not in shown


def test_escape_text_handles_surrogateescaped_names():
    assert escape_text(b"comm\xfe".decode("utf-8", "surrogateescape")) == "comm\\xfe"
