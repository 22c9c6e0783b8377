"""Metric names in PromQL expressions, and the names the operator's registry really exports."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

import memorywatch.metrics  # noqa: F401  (registers the operator's metrics)

# Series Prometheus itself makes for every scrape target, not the operator.
PROMETHEUS_SERIES = frozenset({"up"})
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"})
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "", "_created"),
    "info": ("_info",),
}


def exported_names() -> frozenset[str]:
    """Every series name the operator's registry exposes (with a labelled metric's children or without)."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("memorywatch_"):
            continue
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, labels, durations and variables removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (label values)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def unknown_names(expr: str) -> set[str]:
    return metric_names(expr) - exported_names() - PROMETHEUS_SERIES
