"""Where the big_vision fixtures live: `tests/fixtures/` (see its README.md)."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_path(name):
    """Path of `tests/fixtures/<name>`; a missing fixture is an error, never a skip."""
    path = FIXTURES / name
    if not path.is_file():
        raise FileNotFoundError(f"fixture {path} is missing from the repository")
    return path
