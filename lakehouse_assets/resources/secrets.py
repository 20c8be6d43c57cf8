"""Secrets in resource config: from the environment they are passed as Dagster EnvVars, so the
UI shows the variable's name, never the value."""

import os
from typing import Any

from dagster import EnvVar
from pydantic import SecretStr


def secret_setting(env: str, value: SecretStr | None) -> Any:
    """A secret resource value: an EnvVar (the UI shows the variable's name) when it comes from
    the environment, else the value given in code (tests), else empty."""
    if os.environ.get(env):
        return EnvVar(env)
    return value.get_secret_value() if value else ""
