"""The goroutine-count ceiling for stop-the-world stack dumps: below it dumps are allowed, above it the refusal
names the count, the ceiling and where the stacks are instead; an unknown count does not refuse."""

from __future__ import annotations

from memorywatch.rules.guards import MAX_DUMP_GOROUTINES, stack_dump_refusal


def test_a_target_below_the_ceiling_may_be_dumped() -> None:
    assert stack_dump_refusal(12) is None
    assert stack_dump_refusal(MAX_DUMP_GOROUTINES) is None
    assert stack_dump_refusal(None) is None


def test_a_target_above_the_ceiling_is_not_dumped_and_the_note_says_why() -> None:
    note = stack_dump_refusal(200_000)
    assert note == (
        "goroutine?debug=2 not taken: the target has 200,000 goroutines, above the 50,000 ceiling for a full"
        " stack dump (it stops the world while it formats every goroutine); the grouped goroutine profile"
        " (goroutine.txt) names the stacks instead"
    )
