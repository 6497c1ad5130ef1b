"""A region: where a miner says it is (`us-west`, `eu-central-1`, `local`), as registered and as filtered on."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

REGION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
REGION_MAX_LENGTH = 64

# Compared and stored in lower case: `US-West` and `us-west` are one region.
Region = Annotated[
    str,
    Field(min_length=1, max_length=REGION_MAX_LENGTH, pattern=REGION_PATTERN, examples=["us-west", "local"]),
    AfterValidator(str.lower),
]
