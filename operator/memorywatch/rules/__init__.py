"""Leak rules: pure functions of a target's sample series; the clock is the samples' own `time`."""
