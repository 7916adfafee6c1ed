"""The fixtures of `tests.system.http.verify`, shared with these tests."""

from tests.system.http.verify.conftest import *  # noqa: F403
