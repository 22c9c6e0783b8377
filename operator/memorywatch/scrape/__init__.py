"""Scraping Go targets over HTTP: the only package that talks to targets (its HTTP client is aiohttp).

`Scraper` (an async context manager) takes the cheap per-interval `sample()` of a target (index page,
heap?debug=1 streamed, /metrics when offered, goroutine?debug=1 on request) and fetches profiles on demand
(`fetch_profile`, `fetch_text`, `expvar`). Every request is bounded in time and size by `Limits`.

Error tree (every failure of a scrape is exactly one of these; no aiohttp exception escapes):

    ScrapeError                  target display name + URL path in the message, never the bearer token
    ├── TargetUnreachable        connection refused, DNS failure, reset, closed before answering
    ├── ScrapeTimeout            `.phase` is connect, read or total; `.timeout_seconds`
    ├── TLSFailure               handshake failed: unknown CA, wrong name, plain HTTP, unreadable TLS files
    ├── Unauthorized             HTTP 401/403: check the bearer token Secret
    ├── NotFound                 HTTP 404: is net/http/pprof mounted at pprof_path?
    ├── HTTPStatusError          any other status; `.status_code`, `.body_excerpt` (~200 sanitized chars)
    ├── ResponseTooLarge         a byte cap was hit; `.limit_name` is the Limits field to raise
    ├── OverBudget               a parse budget was hit (shape, worker deadline or memory); `.limit_name`
    ├── NotAGoTarget             an HTML page, a JSON API, ...; `.seen` says what came back
    └── MalformedResponse        pprof-looking output that does not parse (wraps memorywatch.pprof.PprofError)

`ValueError` is raised for programming errors only (a bad profile name, debug=N given to fetch_profile), and
`RuntimeError` when the Scraper is used outside its `async with`.
"""

from memorywatch.scrape.config import Limits, TargetConfig, TLSConfig
from memorywatch.scrape.errors import (
    HTTPStatusError,
    MalformedResponse,
    NotAGoTarget,
    NotFound,
    OverBudget,
    ResponseTooLarge,
    ScrapeError,
    ScrapeTimeout,
    TargetUnreachable,
    TLSFailure,
    Unauthorized,
)
from memorywatch.scrape.scraper import Scraper, TextCapture

__all__ = [
    "HTTPStatusError",
    "Limits",
    "MalformedResponse",
    "NotAGoTarget",
    "NotFound",
    "OverBudget",
    "ResponseTooLarge",
    "ScrapeError",
    "ScrapeTimeout",
    "Scraper",
    "TLSConfig",
    "TLSFailure",
    "TargetConfig",
    "TargetUnreachable",
    "TextCapture",
    "Unauthorized",
]
