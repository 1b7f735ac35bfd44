"""Whether a request asks for a fresh read: `no-cache` in its Cache-Control or Pragma lines.

The one parser of request cache directives, for single reads, `?wait=` and batches alike.
A header may come as several lines, each a comma-separated list (RFC 9110 5.3: the lines
are one list), with directive names in any case and arguments after `=`, possibly quoted
(a quoted comma does not split). Every line and every member is read.
"""

from __future__ import annotations

from multidict import CIMultiDictProxy

_NO_CACHE = "no-cache"


def wants_fresh(headers: CIMultiDictProxy[str]) -> bool:
    """True when any Cache-Control line or member is `no-cache`, or any Pragma one is.

    RFC 9111 5.4 says a cache ignores Pragma when Cache-Control is present. We do not: an
    HTTP/1.0 caller's `Pragma: no-cache` beside, say, `Cache-Control: max-age=60` from a
    library default still gets a fresh read. The safe error is one extra Juspay read, never
    a stale answer to a caller that asked for a fresh one.
    """
    return any(
        _lists_no_cache(line)
        for name in ("Cache-Control", "Pragma")
        for line in headers.getall(name, ())
    )


def _lists_no_cache(line: str) -> bool:
    lowered = line.lower()
    if _NO_CACHE not in lowered:  # the common case costs one scan
        return False
    return _NO_CACHE in _directive_names(lowered)


def _directive_names(line: str) -> set[str]:
    """The directive names of one (lower-cased) line; commas inside quotes do not split."""
    names: set[str] = set()
    start = 0
    quoted = escaped = False
    for index, char in enumerate(line):
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == ",":
            names.add(line[start:index].partition("=")[0].strip())
            start = index + 1
    names.add(line[start:].partition("=")[0].strip())
    return names
