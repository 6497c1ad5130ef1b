"""A job's name and tags: what a client calls its jobs and how it groups them, to find them again (list, export,
cancel by filter). Both are the client's own words, checked here once for every way a job comes in."""

from __future__ import annotations

from collections.abc import Iterable

# A name is free text on one line (it is shown in tables): anything but control characters, up to 200.
JOB_NAME_MAX_LENGTH = 200
JOB_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
# A tag is a short label: letters, digits and `_ . : -`, so it needs no quoting in a URL, a CSV cell or a shell.
TAG_MAX_LENGTH = 64
TAG_PATTERN = rf"^[A-Za-z0-9_.:\-]{{1,{TAG_MAX_LENGTH}}}$"
MAX_TAGS = 16


def unique_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """The tags in the order given, each once (a job has a tag or it has not)."""
    return tuple(dict.fromkeys(tags))
