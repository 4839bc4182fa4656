"""Where the shared big_vision fixtures live.

`KERAS_SIGLIP_SHARED` wins; otherwise `shared/` beside the repository clone (the CI layout).
"""

import os
from pathlib import Path

import pytest


def shared_dir():
    """The shared directory (may not exist)."""
    env = os.environ.get("KERAS_SIGLIP_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared"


def fixture_path(name):
    """Path of `fixtures/<name>` in the shared directory; skips the calling test if it is missing."""
    path = shared_dir() / "fixtures" / name
    if not path.is_file():
        if os.environ.get("CI"):
            # In CI the fixtures must be there: a skip would hide a broken layout.
            pytest.fail(f"fixture {path} not found; CI expects shared/ beside the clone")
        pytest.skip(f"fixture {path} not found (set KERAS_SIGLIP_SHARED to the shared/ directory)")
    return path
