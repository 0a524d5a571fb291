"""``updates:``: how signed model bundles are received, checked and watched (docs/inference.md)."""

from __future__ import annotations

from pydantic import Field

from shaobing.core.model import Strict


class UpdatesConfig(Strict):
    enabled: bool = Field(default=True, description="accept model_update commands and bundles")
    max_bundle_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="larger bundles are refused unread"
    )
    max_chunk_bytes: int = Field(
        default=256 * 1024, ge=1024, le=1024 * 1024, description="largest chunk a county may send"
    )
    budget_ms: float = Field(
        default=2000.0,
        gt=0,
        description="median inference time a model may take, in the check and in service",
    )
    watch_s: float = Field(
        default=600.0,
        gt=0,
        description="how long a new model, or a settings bundle's change, is on probation",
    )
    max_starts: int = Field(
        default=3,
        ge=1,
        description="agent starts within a watch that mean a crash loop (model or settings)",
    )
    max_faults: int = Field(
        default=5, ge=1, description="inference steps failing in a row that mean a faulty model"
    )
    slow_inferences: int = Field(
        default=20,
        ge=1,
        le=64,
        description="consecutive inferences over budget_ms that mean too slow",
    )
