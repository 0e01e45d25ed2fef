"""Safe display of bytes the kernel hands us unchecked (unix names, process names).

The result never holds a control character, a line or paragraph separator, a bidi override or a
lone surrogate, so it can go to a terminal or a one-line-per-record format; it is unambiguous
(backslash is escaped too), but lossy only in form: the exact bytes travel separately (JSON `*_hex`).
"""

import re

_PLAIN_ASCII = re.compile(rb"[\x20-\x5b\x5d-\x7e]*\Z")
_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape_text(text: str) -> str:
    """Escape what is not printable in `text` (decoded with surrogateescape: those become \\xNN)."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        named = _NAMED_ESCAPES.get(ch)
        if named is not None:
            out.append(named)
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            if 0xDC80 <= code <= 0xDCFF:
                out.append("\\x%02x" % (code - 0xDC00))
            elif code < 0x100:
                out.append("\\x%02x" % code)
            elif code < 0x10000:
                out.append("\\u%04x" % code)
            else:
                out.append("\\U%08x" % code)
    return "".join(out)


def escape_bytes(data: bytes) -> str:
    """Show `data` as text: valid UTF-8 as is where printable, anything else escaped."""
    if _PLAIN_ASCII.match(data):
        return data.decode("ascii")
    return escape_text(data.decode("utf-8", "surrogateescape"))


_ESCAPE = re.compile(r"\\(?:([\\ntr])|x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8}))")
_UNESCAPES = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def unescape_text(shown: str) -> str:
    """The text `escape_text` showed as `shown` (saved output read back); ValueError when `shown`
    is not what it writes. \\xNN from 0x80 comes back as the byte NN (surrogateescape), which
    is what a non-UTF-8 byte read from /proc is: escape_text writes a C1 control code point the
    same way, so that one alone comes back in the other form (shown the same)."""
    if "\\" not in shown:
        text = shown
    else:
        def one(match) -> str:
            named, byte, short, long = match.groups()
            if named is not None:
                return _UNESCAPES[named]
            code = int(byte or short or long, 16)
            return chr(0xDC00 + code if byte is not None and code >= 0x80 else code)

        text = _ESCAPE.sub(one, shown)
    if escape_text(text) != shown:
        raise ValueError("not escaped as procsock escapes text")
    return text
