"""The Secret-consent message: what is refused, why, and commands that grant exactly it."""

from __future__ import annotations

import shlex

from memorywatch.api.consent import ConsentTarget, consent_message, grant_commands, secret_problem

TARGET = ConsentTarget("memorywatch-system", "mw-memorywatch", "mw-memorywatch-secret-reader")


def test_message_names_field_secret_and_both_commands() -> None:
    m = consent_message("shop", "pprof-token", "spec.endpoint.bearerTokenSecretRef", TARGET)
    assert m.startswith(
        "spec.endpoint.bearerTokenSecretRef: the operator may not read Secret shop/pprof-token"
    )
    assert ("kubectl -n shop create rolebinding memorywatch-secret-reader "
            "--clusterrole=mw-memorywatch-secret-reader --serviceaccount=memorywatch-system:mw-memorywatch") in m  # fmt: skip
    assert (
        "create role memorywatch-secret-reader --verb=get --resource=secrets --resource-name=pprof-token" in m
    )


def test_commands_are_shell_safe() -> None:
    whole, named = grant_commands("shop", ("a", "b"), TARGET)
    assert shlex.split(whole)[:4] == ["kubectl", "-n", "shop", "create"]
    assert "--resource-name=a --resource-name=b" in named


def test_other_errors_keep_their_own_text() -> None:
    e = KeyError("no key 'token'")
    assert (
        secret_problem(e, forbidden=False, namespace="shop", secret="s", field="f", target=TARGET)
        == f"f: {e}"
    )
    assert "may not read" in secret_problem(
        e, forbidden=True, namespace="shop", secret="s", field="f", target=TARGET
    )


def test_target_from_env_and_defaults() -> None:
    env = {"MEMORYWATCH_POD_NAMESPACE": "ops", "MEMORYWATCH_SERVICE_ACCOUNT": "sa",
           "MEMORYWATCH_SECRET_READER_ROLE": "role"}  # fmt: skip
    assert ConsentTarget.from_env(env) == ConsentTarget("ops", "sa", "role")
    assert ConsentTarget.from_env({}).subject == "memorywatch-system:memorywatch"
