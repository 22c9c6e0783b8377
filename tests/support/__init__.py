"""Helpers shared by the test suite: building and running the real Go targets under tests/gotargets."""
