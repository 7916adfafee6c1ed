"""The fixtures of `tests.system.http.secagg`, shared with these tests."""

from tests.system.http.secagg.conftest import *  # noqa: F403
