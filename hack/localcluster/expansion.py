"""Kubernetes `$(VAR)` expansion, ported from k8s.io/kubernetes third_party/forked/golang/expansion (v1.36.3).

Rules (identical to the kubelet):
- `$(NAME)` is replaced by NAME's value when NAME is defined, and left as the literal `$(NAME)` otherwise;
- `$$` is an escaped `$`: `$$(NAME)` becomes the literal `$(NAME)`;
- a `$` followed by anything else, or an unterminated `$(`, is kept as is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    def mapping(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return f"$({name})"

    return mapping


def expand(value: str, mapping: Callable[[str], str]) -> str:
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(value)
    while cursor < n:
        if value[cursor] == "$" and cursor + 1 < n:
            out.append(value[checkpoint:cursor])
            rest = value[cursor + 1 :]
            first = rest[0]
            if first == "$":
                read, is_var, advance = "$", False, 1
            elif first == "(":
                close = rest.find(")", 1)
                if close == -1:
                    read, is_var, advance = "$(", False, 1
                else:
                    read, is_var, advance = rest[1:close], True, close + 1
            else:
                read, is_var, advance = "$" + first, False, 1
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + value[checkpoint:]
