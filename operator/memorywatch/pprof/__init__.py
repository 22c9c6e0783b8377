"""Parsers for what a Go process serves through net/http/pprof, expvar and Prometheus; pure, no I/O.

This is the only package that imports protobuf. Every function takes the bytes or text the caller fetched
and returns frozen values; none of them touches the network, the disk or the clock.

Modules: `memstats` (the runtime.MemStats block), `heap_text` (streaming heap?debug=1), `goroutines`
(goroutine?debug=1, diffs, the stuck finalizer), `goroutine_stacks` (goroutine?debug=2 dumps), `index` (the /debug/pprof/ page), `expvar` (/debug/vars),
`prometheus_text` (/metrics), `profiles` (gzipped protobuf profiles and their growth diffs), `jobs` (the
expensive parses packaged for a bounded worker process, with their `ParseBudget`).

Errors (all carry a message saying what was expected and the first characters of what was seen)::

    PprofError                 anything served that is not what it should be
    ├── NotPprofIndex          the index page is some other page (HTML, JSON, empty)
    ├── MalformedText          heap or goroutine text that runtime/pprof did not print
    ├── MalformedJSON          /debug/vars that is not a JSON object
    ├── MalformedMetrics       /metrics that is not Prometheus text exposition
    ├── BudgetExceeded         a shape past a parse budget (`.limit_name`, `.limit`): millions of samples,
    │                          thousands of goroutine groups, a MemStats array over 4096 entries
    └── ProfileError           a protobuf profile that cannot be used
        ├── ProfileTruncated   the gzip stream ends early (a cut transfer)
        ├── ProfileCorrupt     not gzip, not a pprof protobuf, or inconsistent tables
        ├── ProfileTooLarge    decompresses past the caller's cap (a gzip bomb is refused here)
        └── SampleTypeMissing  a diff asked for a sample type the profile does not have

Parsers raise only these (plus ValueError for a caller's own bad arguments, such as too few snapshots).
"""

from memorywatch.pprof.errors import (
    BudgetExceeded,
    MalformedJSON,
    MalformedMetrics,
    MalformedText,
    NotPprofIndex,
    PprofError,
    ProfileCorrupt,
    ProfileError,
    ProfileTooLarge,
    ProfileTruncated,
    SampleTypeMissing,
)
from memorywatch.pprof.expvar import ExpvarSnapshot, parse_expvar
from memorywatch.pprof.goroutine_stacks import GoroutineStack, finalizer_goroutine, parse_goroutine_debug2
from memorywatch.pprof.goroutines import (
    Frame,
    GoroutineGroup,
    GoroutineProfile,
    GroupGrowth,
    blocked_finalizer,
    diff_goroutines,
    group_name,
    growing_groups,
    parse_goroutine_debug1,
)
from memorywatch.pprof.heap_text import HeapText, HeapTextParser, parse_heap_text, scale_heap_sample
from memorywatch.pprof.index import parse_index
from memorywatch.pprof.memstats import GO_FIELDS, MemStats, parse_memstats_lines
from memorywatch.pprof.profiles import (
    Profile,
    ProfileInfo,
    ProfileSample,
    SiteGrowth,
    ValueType,
    gunzip_capped,
    parse_profile,
    profile_info,
    top_growth,
    top_growth_by_function,
)
from memorywatch.pprof.prometheus_text import PromSnapshot, parse_prometheus_text

__all__ = [
    "GO_FIELDS",
    "BudgetExceeded",
    "ExpvarSnapshot",
    "Frame",
    "GoroutineGroup",
    "GoroutineProfile",
    "GoroutineStack",
    "GroupGrowth",
    "HeapText",
    "HeapTextParser",
    "MalformedJSON",
    "MalformedMetrics",
    "MalformedText",
    "MemStats",
    "NotPprofIndex",
    "PprofError",
    "Profile",
    "ProfileCorrupt",
    "ProfileError",
    "ProfileInfo",
    "ProfileSample",
    "ProfileTooLarge",
    "ProfileTruncated",
    "PromSnapshot",
    "SampleTypeMissing",
    "SiteGrowth",
    "ValueType",
    "blocked_finalizer",
    "diff_goroutines",
    "finalizer_goroutine",
    "group_name",
    "growing_groups",
    "gunzip_capped",
    "parse_expvar",
    "parse_goroutine_debug1",
    "parse_goroutine_debug2",
    "parse_heap_text",
    "parse_index",
    "parse_memstats_lines",
    "parse_profile",
    "parse_prometheus_text",
    "profile_info",
    "scale_heap_sample",
    "top_growth",
    "top_growth_by_function",
]
