"""Leak rules: pure functions of a target's sample series; the clock is the samples' own `time`.

`engine.TargetJudge` is the entry point (one per target); `trend` holds the shared "sustained growth" test;
one module per rule kind. Errors: nothing escapes `TargetJudge.observe` — missing or odd data becomes a
note; the constructor raises `ValueError` only for a rule kind without an implementation.
"""
