"""The one-line capture summary: the verdict first, then what grew, most relevant first, no runtime noise."""

from __future__ import annotations

from memorywatch.engine.capture import summarise
from memorywatch.rules.model import Breach, RuleKind

HEAP = [
    {"function": "runtime.malg", "inuseBytesDelta": 3 << 20},
    {"function": "main.retainRecords", "inuseBytesDelta": 48 << 20},
]
GOROUTINES = [{"function": "main.blockForever", "before": 10, "after": 850, "delta": 840}]


def breach(kind: RuleKind, message: str) -> Breach:
    return Breach(rule="r", kind=kind, target="t", time=0.0, message=message, evidence={})


def test_goroutine_leak_leads_with_the_stacks_and_skips_runtime_sites() -> None:
    line = summarise([breach(RuleKind.GOROUTINE_GROWTH, "Goroutines grew.")], HEAP[:1], GOROUTINES)
    assert line == "Goroutines grew; top goroutine growth main.blockForever +840"


def test_heap_leak_leads_with_the_allocation_site() -> None:
    line = summarise([breach(RuleKind.HEAP_GROWTH, "The live heap grew.")], HEAP, GOROUTINES)
    assert (
        line
        == "The live heap grew; top heap growth main.retainRecords +48 MiB; top goroutine growth main.blockForever +840"
    )


def test_small_heap_growth_stays_out_of_the_line() -> None:
    small = [{"function": "hash/crc32.slicingMakeTable", "inuseBytesDelta": 516 << 10}]
    assert "crc32" not in summarise(
        [breach(RuleKind.GOROUTINE_GROWTH, "Goroutines grew.")], small, GOROUTINES
    )


def test_nothing_grew_is_just_the_verdict() -> None:
    assert summarise([breach(RuleKind.THRESHOLD, "Sys is over 4 GiB.")], [], []) == "Sys is over 4 GiB"


def test_a_heap_leak_line_leaves_out_goroutine_noise() -> None:
    """A reader loop gaining one goroutine between the captured profiles says nothing about a heap leak."""
    noise = [{"function": "net.(*netFD).Read", "before": 12, "after": 13, "delta": 1}]
    line = summarise([breach(RuleKind.HEAP_GROWTH, "The live heap grew.")], HEAP, noise)
    assert line == "The live heap grew; top heap growth main.retainRecords +48 MiB"


def test_a_heap_leak_line_leaves_out_growth_small_next_to_what_the_group_held() -> None:
    """+150 on a pool of 5,000 connection goroutines is 3%: load, not news."""
    pool = [{"function": "main.serveConn", "before": 5000, "after": 5150, "delta": 150}]
    assert "goroutine" not in summarise([breach(RuleKind.HEAP_GROWTH, "The live heap grew.")], HEAP, pool)


def test_a_goroutine_leak_line_keeps_even_small_goroutine_growth() -> None:
    small = [{"function": "main.worker", "before": 12, "after": 13, "delta": 1}]
    line = summarise([breach(RuleKind.GOROUTINE_GROWTH, "Goroutines grew.")], [], small)
    assert line == "Goroutines grew; top goroutine growth main.worker +1"
