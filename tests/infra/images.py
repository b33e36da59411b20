"""Whether a container image reference names a fixed version."""

from __future__ import annotations

MOVING_TAGS = frozenset({"latest", "stable", "edge", "nightly", "main", "master"})


def tag_of(reference: str) -> str | None:
    """The tag of an image reference (None when it has none); a digest counts as its tag."""
    if "@" in reference:
        return reference.split("@", 1)[1]
    last = reference.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def is_pinned(reference: str) -> bool:
    """True for a digest or a version tag: not untagged, not a moving tag like ``latest``."""
    tag = tag_of(reference)
    if tag is None:
        return False
    if tag.startswith("sha256:"):
        return True
    return tag.lower() not in MOVING_TAGS and any(ch.isdigit() for ch in tag)
