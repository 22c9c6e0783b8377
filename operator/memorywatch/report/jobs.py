"""The report rendered as a job for a bounded worker process (it decodes the heap profiles again).

Pure: bytes and a ParseBudget in, the page's bytes out; `memorywatch.workers` runs it under a deadline and a
memory limit, so a hostile profile costs only its own report, never the capture or the operator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from memorywatch.pprof.jobs import ParseBudget
from memorywatch.report.page import ReportInput, ReportLimits, render_report


def render_report_job(
    manifest: Mapping[str, Any], heap: bytes | None, baseline: bytes | None, budget: ParseBudget
) -> bytes:
    """`render_report` with the profiles held to the same decompressed-size budget as every other parse."""
    limits = dataclasses.replace(ReportLimits(), max_profile_bytes=budget.max_decompressed_bytes)
    return render_report(ReportInput(manifest, heap, baseline), limits).encode("utf-8")
