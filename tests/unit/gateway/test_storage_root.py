"""The storage root (``VEILBOX_STORAGE_ROOT``): registered data and models live under it, the home's rows name them
by key, and the home together with its storage root can be moved elsewhere and keeps working."""

from __future__ import annotations

import json
import shutil

import pytest

from catalog import registry
from catalog.columns import DatasetSpec
from gateway.context import init_home, open_context
from gateway.masterkey import default_key_file
from gateway.sealing import sealer_of
from gateway.settings import Settings


def test_data_and_models_live_under_the_storage_root_and_move_with_it(tmp_path, city_data):
    s = Settings(home=tmp_path / "home", storage_root=tmp_path / "shared" / "root", env="test",
                 import_roots=[city_data.tax_income.parent.parent])
    assert Settings(home=tmp_path / "home").data_dir == tmp_path / "home" / "data"  # default: the home, as before
    root = tmp_path / "shared" / "root"
    assert (s.data_dir, s.models_dir) == (root / "data", root / "models")
    init_home(s)
    ctx = open_context(s)
    try:
        spec = DatasetSpec.model_validate(json.loads(city_data.tax_income_spec.read_text()))
        reg = registry.register(ctx.engine, spec, city_data.tax_income.parent.name, s.data_dir,
                                s.owner_import_dirs(city_data.tax_income.parent.name), 1 << 30,
                                sealer=sealer_of(ctx))
        assert reg.dataset.path.parent == s.data_dir and reg.dataset.key == reg.dataset.path.name
    finally:
        ctx.close()
    moved = Settings(home=tmp_path / "elsewhere" / "home", storage_root=tmp_path / "mounted" / "root", env="test")
    shutil.copytree(s.home, moved.home)
    shutil.copy2(default_key_file(s.home), default_key_file(moved.home))
    shutil.copytree(tmp_path / "shared" / "root", tmp_path / "mounted" / "root")
    shutil.rmtree(s.home)
    shutil.rmtree(tmp_path / "shared")
    again = open_context(moved)
    try:
        ds = registry.get(again.engine, "tax_income")
        assert ds is not None and ds.path == moved.data_dir / reg.dataset.key
        registry.verify_copy(ds, sealer_of(again))
    finally:
        again.close()


def test_an_import_root_may_not_contain_the_storage_root(tmp_path):
    with pytest.raises(ValueError, match="the storage root"):
        Settings(home=tmp_path / "home", storage_root=tmp_path / "in" / "root", import_roots=[tmp_path / "in"])
