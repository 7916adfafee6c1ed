"""The fixtures of `tests.system.http.psi`, shared with these tests."""

from tests.system.http.psi.conftest import *  # noqa: F403
