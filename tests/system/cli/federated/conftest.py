"""The fixtures of `tests.system.http.federated`, shared with these tests."""

from tests.system.http.federated.conftest import *  # noqa: F403
