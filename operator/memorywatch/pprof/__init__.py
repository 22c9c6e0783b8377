"""Parsers for what a Go process serves through net/http/pprof, expvar and Prometheus; pure, no I/O.

This is the only package that imports protobuf.
"""
