"""CI runs exactly what the README tells a person to run, and `hack/test unit` is the quick loop CONTRIBUTING names.

We test these aspects: .ci/run executes `hack/test` with no arguments; the README's test command is `hack/test`;
CONTRIBUTING.md names `hack/test unit`, and hack/test routes `unit` to the unit tests only.
"""

from __future__ import annotations

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_ci_runs_the_readme_test_command() -> None:
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in ci if line and not line.startswith("#")]
    assert commands[-1] == "exec hack/test", commands
    assert re.search(r"^hack/test\s+#", (REPO / "README.md").read_text(), re.MULTILINE)


def test_unit_loop_is_documented_and_routed() -> None:
    assert "hack/test unit" in (REPO / "CONTRIBUTING.md").read_text()
    script = (REPO / "hack" / "test").read_text()
    unit = script[script.index("if [[ ${1:-} == unit ]]") :]
    unit = unit[: unit.index("\nfi\n")]
    assert "pytest" in unit and "tests/unit" in unit and "build-tools" not in unit
