"""`memorywatch --help`, `watch` and `captures` work with the base install: building the CLI loads none of the
operator's packages (kopf, kubernetes) nor boto3. The wheel test proves it in a fresh venv; this one
catches a top-level import in seconds. (aiohttp is a base dependency since the scraper uses its HTTP client.)"""

from __future__ import annotations

import subprocess
import sys

OPERATOR_ONLY = ("kopf", "kubernetes", "boto3", "botocore")


def test_building_the_cli_loads_no_operator_only_package() -> None:
    code = (
        "import sys, memorywatch.cli as c; c._build_parser(); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({OPERATOR_ONLY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
