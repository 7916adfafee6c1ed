"""The fixtures of `tests.system.http.console`, shared with these tests."""

from tests.system.http.console.conftest import *  # noqa: F403
