"""`sandbox.coderun.tmpfs`: a real run's input is staged only on a memory-backed filesystem, swept after a crash."""

from __future__ import annotations

import os

import pytest

from sandbox.coderun import tmpfs


def test_the_filesystem_is_that_of_the_longest_mount_point(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\nx /dev/shm/my\\040dir ramfs rw 0 0\n")
    assert tmpfs.filesystem_of("/dev/shm/a", str(mounts)) == "tmpfs"
    assert tmpfs.filesystem_of("/dev/shm/my dir/b", str(mounts)) == "ramfs"
    assert tmpfs.filesystem_of("/dev/shmx", str(mounts)) == "ext4"
    assert tmpfs.filesystem_of("/x", str(tmp_path / "absent")) is None


def test_a_disk_directory_is_refused(tmp_path):
    if tmpfs.filesystem_of(tmp_path) in tmpfs.MEMORY_FILESYSTEMS:
        pytest.skip("the test directory is itself on a tmpfs here")
    with pytest.raises(tmpfs.TmpfsUnavailable):
        tmpfs.private_dir(tmp_path, "job")
    with pytest.raises(tmpfs.TmpfsUnavailable):
        tmpfs.check_root(tmp_path / "missing")


@pytest.mark.skipif(tmpfs.filesystem_of(tmpfs.DEFAULT_ROOT) not in tmpfs.MEMORY_FILESYSTEMS, reason="no /dev/shm")
def test_private_directories_are_0700_and_only_dead_workers_ones_are_swept():
    mine = tmpfs.private_dir(None, "job/1")
    dead = tmpfs.private_dir(None, "job2")
    orphan = dead.with_name(dead.name.replace(f"-{os.getpid()}-", "-999999999-", 1))
    dead.rename(orphan)
    try:
        assert mine.stat().st_mode & 0o777 == 0o700 and "/" not in mine.name.removeprefix(tmpfs.PREFIX)
        assert tmpfs.sweep_stale(None) == [orphan]
        assert mine.exists() and not orphan.exists()
    finally:
        mine.rmdir()
