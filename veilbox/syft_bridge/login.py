"""Log a syft-rds client in over the Veilbox spool instead of Google Drive.

``syft_rds.login_ds`` / ``login_do`` (``syft_rds/login.py``) always build a Google Drive connection
(``SyftRDSClientConfig.for_jupyter`` → ``GdriveConnectionConfig``) and first read the remote version file through
``GDriveConnection`` (``syft/sync/login_utils.py``). The pieces underneath are public and configurable:
``SyftboxManagerConfig`` and its syncer configs take a list of ``ConnectionConfig``; ``SyftRDSClientConfig`` takes the
three sub-configs; ``SyftRDSClient.from_config`` builds the client. :func:`login_ds` assembles exactly what
``for_jupyter`` assembles, with :class:`~veilbox.syft_bridge.transport.VeilboxSpoolConfig` as the connection, and
returns syft-rds's own ``SyftRDSClient`` — the data scientist then uses ``client.datasets``,
``client.submit_python_job`` and ``client.jobs`` as usual.
"""

from __future__ import annotations

from pathlib import Path

from syft.sync.syftbox_manager import SyftboxManagerConfig, default_collections_folder
from syft.sync.sync.caches.datasite_owner_cache import DataSiteOwnerEventCacheConfig
from syft.sync.sync.caches.datasite_watcher_cache import DataSiteWatcherCacheConfig
from syft.sync.sync.datasite_owner_syncer import DatasiteOwnerSyncerConfig
from syft.sync.sync.datasite_watcher_syncer import DatasiteWatcherSyncerConfig
from syft.sync.version.peer_manager import PeerManagerConfig
from syft_datasets.config import SyftBoxConfig
from syft_job import SyftJobConfig
from syft_rds import SyftRDSClient, SyftRDSClientConfig
from syft_rds.config import DATASET_COLLECTION_SPECS

from veilbox.syft_bridge.transport import VeilboxSpoolConfig


def client_config(email: str, spool: Path, syftbox_folder: Path, *, owner: bool) -> SyftRDSClientConfig:
    """The syft-rds configuration ``for_jupyter`` builds, with the Veilbox spool as the only connection."""
    specs = DATASET_COLLECTION_SPECS
    connections = [VeilboxSpoolConfig(email=email, spool=Path(spool))]
    collections_folder = default_collections_folder(syftbox_folder, email, specs)
    sync = SyftboxManagerConfig(
        email=email,
        syftbox_folder=syftbox_folder,
        has_ds_role=not owner,
        has_do_role=owner,
        use_in_memory_cache=False,
        datasite_owner_syncer_config=DatasiteOwnerSyncerConfig(
            email=email,
            syftbox_folder=syftbox_folder,
            collections_folder=collections_folder,
            collection_specs=specs,
            connection_configs=connections,
            cache_config=DataSiteOwnerEventCacheConfig(
                email=email,
                use_in_memory_cache=False,
                syftbox_folder=syftbox_folder,
                collections_folder=collections_folder,
                connection_configs=connections,
            ),
        ),
        datasite_watcher_syncer_config=DatasiteWatcherSyncerConfig(
            email=email,
            syftbox_folder=syftbox_folder,
            connection_configs=connections,
            datasite_watcher_cache_config=DataSiteWatcherCacheConfig(
                email=email,
                use_in_memory_cache=False,
                syftbox_folder=syftbox_folder,
                collection_specs=specs,
                connection_configs=connections,
            ),
        ),
        peer_manager_config=PeerManagerConfig(
            email=email,
            syftbox_folder=syftbox_folder,
            connection_configs=connections,
            has_do_role=owner,
            has_ds_role=not owner,
        ),
    )
    return SyftRDSClientConfig(
        sync=sync,
        job=SyftJobConfig(syftbox_folder=syftbox_folder, current_user_email=email, has_do_role=owner),
        dataset=SyftBoxConfig(syftbox_folder=syftbox_folder, email=email),
    )


def _login(email: str, spool: str | Path, syftbox_folder: str | Path | None, *, owner: bool) -> SyftRDSClient:
    folder = Path(syftbox_folder) if syftbox_folder else Path.home() / f"SyftBox_{email}"
    client = SyftRDSClient.from_config(client_config(email, Path(spool), folder, owner=owner))
    client.sync_engine.write_local_version()
    client.sync_engine.peer_manager.write_own_version()
    client.sync()
    return client


def login_ds(email: str, spool: str | Path, syftbox_folder: str | Path | None = None) -> SyftRDSClient:
    """A data scientist's syft-rds client whose transport is the Veilbox spool."""
    return _login(email, spool, syftbox_folder, owner=False)


def login_do(email: str, spool: str | Path, syftbox_folder: str | Path | None = None) -> SyftRDSClient:
    """The datasite owner's syft-rds client (run by the Veilbox bridge, not by people)."""
    return _login(email, spool, syftbox_folder, owner=True)
