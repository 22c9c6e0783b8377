"""The net/http/pprof index page (`/debug/pprof/`): the count of each profile, the cheapest goroutine count."""

from __future__ import annotations

import html
import re

from memorywatch.pprof.errors import NotPprofIndex

# net/http/pprof's template prints one row per profile:
#   <tr><td>{{.Count}}</td><td><a href='{{.Href}}?debug=1'>{{.Name}}</a></td></tr>
# Older releases printed `<tr><td align=right>{{.Count}}<td><a href="…">` or `{{.Count}}\t<a href="…">…<br>`;
# the pattern accepts all three and either quote.
_ROW = re.compile(
    r"(\d+)\s*(?:</td>)?\s*(?:<td>)?\s*<a href=['\"][^'\"<>]*\?debug=1['\"]>([^<>]{1,100})</a>",
    re.IGNORECASE,
)
# Every Go release registers these runtime profiles, so an index without them is some other page that
# happens to contain a similar link.
_ALWAYS_PRESENT = ("goroutine", "heap")


def parse_index(page: str) -> dict[str, int]:
    """Profile name -> count (`goroutine` is runtime.NumGoroutine(), `heap` the number of heap records).

    Raises NotPprofIndex for anything else: a generic HTML page, a JSON API, an empty body.
    """
    counts: dict[str, int] = {}
    for match in _ROW.finditer(page):
        name = html.unescape(match.group(2)).strip()
        counts[name] = int(match.group(1))
    missing = [name for name in _ALWAYS_PRESENT if name not in counts]
    if missing:
        detail = "no profile table" if not counts else f"no {' or '.join(missing)} row"
        raise NotPprofIndex(page, detail)
    return counts
