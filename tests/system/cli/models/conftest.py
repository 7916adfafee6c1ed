"""The fixtures of `tests.system.http.models`, shared with these tests."""

from tests.system.http.models.conftest import *  # noqa: F403
