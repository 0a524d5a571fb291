"""The one base for every typed model at a boundary: config sections, manifests, profiles, events.

Unknown keys are errors (a typo in a config file must not be ignored) and a model,
once validated, is frozen: a running agent shares its config between threads, and
a change goes through the one config-write path (agent/config_commands.py), never by
assigning to a field.

``Wire`` adds strict types for what the platform sends (commands): "5" is not 5 and
1 is not true, where a YAML file written by a person may rely on coercion.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shaobing.core.ascii_input import ASCII_BEFORE


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Wire(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Identifier = Annotated[
    str,
    ASCII_BEFORE,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="letters, digits, _ . -"),
]
