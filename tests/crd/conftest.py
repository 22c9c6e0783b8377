"""Borrow the local control plane fixtures (`cluster`, `namespace`) from tests/e2e/conftest.py, which owns them.

They are loaded from that file rather than copied, so these tests start, reuse and stop the cluster exactly as
the end-to-end suite does. If that file is missing the CRD tests fail loudly rather than skip.
"""

from __future__ import annotations

import importlib.util
import pathlib

_E2E_CONFTEST = pathlib.Path(__file__).resolve().parents[1] / "e2e" / "conftest.py"
_spec = importlib.util.spec_from_file_location("memorywatch_e2e_fixtures", _E2E_CONFTEST)
if _spec is None or _spec.loader is None:
    raise ImportError(f"cannot load the local-cluster fixtures from {_E2E_CONFTEST}")
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

cluster = _module.cluster
namespace = _module.namespace
