"""A syft (PySyft v2, ``syft`` 0.10) file transport over a spool folder the Veilbox bridge watches.

syft 0.10 syncs datasites over a *file-based transport*: a ``SyftboxPlatformConnection`` chosen by a
``ConnectionConfig`` whose ``connection_type`` names the connection class
(``syft/sync/connections/base_connection.py``). Google Drive (``GDriveConnection``) is the only transport syft
ships. This module is a second one, :class:`VeilboxSpoolConnection`, that keeps the same objects syft keeps on
Drive — peer folders (inbox/outbox), the owner's event log, checkpoints, rolling state, version files and
collections (syft-rds datasets) — as plain files under one spool directory:

    <spool>/sites/<email>/SYFT_peers.json, SYFT_version.json, events/, checkpoints/, rolling/, bundles/
    <spool>/sites/<email>/collections/<prefix>_<tag>_<hash>/  (+ ``.acl.json``: who may read it)
    <spool>/p2p/<datasite>#inbox#<peer>/     proposals the peer sends to the datasite
    <spool>/p2p/<datasite>#outbox#<peer>/    accepted events the datasite sends back to the peer
    <spool>/archive/<sender>#<recipient>/    proposals the datasite has consumed

A file id is the file's path relative to the spool. Every write is atomic (temporary file + ``os.replace``).

Trust: the spool is a local (or mounted) folder. Who may write under ``p2p/<veilbox>#inbox#<email>/`` is decided
by the folder's permissions, which the administrator sets per data scientist; the email a connection claims is
checked against the admin's identity table by the Veilbox side (:mod:`veilbox.syft_bridge.datasite`), never
trusted to grant anything by itself. syft's optional end-to-end encryption is untouched by this transport (it
encrypts before calling us).

The connection implements the methods ``syft.sync.connections.connection_router.ConnectionRouter`` and the
syncers call (the abstract base declares only part of them; the router also calls peer, version, bundle and
deletion helpers by name).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, ClassVar

from syft.sync.checkpoints.checkpoint import (
    CHECKPOINT_FILENAME_PREFIX,
    INCREMENTAL_CHECKPOINT_PREFIX,
    Checkpoint,
    IncrementalCheckpoint,
)
from syft.sync.checkpoints.rolling_state import ROLLING_STATE_FILENAME_PREFIX, RollingState
from syft.sync.connections.base_connection import ConnectionConfig, FileCollection, SyftboxPlatformConnection
from syft.sync.events.file_change_event import FileChangeEventsMessageFileName
from syft.sync.messages.proposed_filechange import FileNameParseError, MessageFileName, ProposedFileChangesMessage

PEERS_FILE = "SYFT_peers.json"
VERSION_FILE = "SYFT_version.json"
ACL_FILE = ".acl.json"
EVENT_PREFIX = "syfteventsmessagev3_"

_LOCK = threading.RLock()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _event_timestamp(name: str) -> float | None:
    try:
        return FileChangeEventsMessageFileName.from_string(name).timestamp
    except Exception:
        return None


def _check_email(email: str) -> str:
    if not email or any(c in email for c in "/\\#\0") or email in {".", ".."}:
        raise ValueError(f"not a usable identity: {email!r}")
    return email


class VeilboxSpoolConfig(ConnectionConfig):
    """Selects :class:`VeilboxSpoolConnection`: the identity and the spool folder."""

    connection_type: ClassVar[type[SyftboxPlatformConnection]]
    email: str
    spool: Path


class VeilboxSpoolConnection(SyftboxPlatformConnection):
    """syft's file transport over a Veilbox spool folder (see the module docstring for the layout)."""

    email: str
    spool: Path

    @classmethod
    def from_config(cls, config: ConnectionConfig) -> VeilboxSpoolConnection:
        assert isinstance(config, VeilboxSpoolConfig)
        conn = cls(config=config, email=_check_email(config.email), spool=Path(config.spool))
        conn._site().mkdir(parents=True, exist_ok=True)
        return conn

    # ----------------------------------------------------------------- paths
    def _site(self, email: str | None = None) -> Path:
        return self.spool / "sites" / _check_email(email or self.email)

    def _p2p(self, datasite: str, kind: str, peer: str) -> Path:
        return self.spool / "p2p" / f"{_check_email(datasite)}#{kind}#{_check_email(peer)}"

    def _id(self, path: Path) -> str:
        return path.relative_to(self.spool).as_posix()

    def _path(self, file_id: str) -> Path:
        path = (self.spool / file_id).resolve()
        if not path.is_relative_to(self.spool.resolve()):
            raise ValueError("file id outside the spool")
        return path

    def _write(self, path: Path, data: bytes | str) -> str:
        _atomic_write(path, data.encode() if isinstance(data, str) else data)
        return self._id(path)

    def download_file(self, file_id: str) -> bytes:
        return self._path(file_id).read_bytes()

    # -------------------------------------------------------------- identity
    def get_authenticated_email(self) -> str:
        return self.email

    def reset_caches(self) -> None:
        return None

    def copy(self) -> VeilboxSpoolConnection:
        return self

    # ----------------------------------------------------------------- peers
    def add_peer(self, peer_email: str) -> None:
        """Ask ``peer_email`` (a datasite) to peer: create my inbox and outbox folders at that datasite."""
        for kind in ("inbox", "outbox"):
            self._p2p(peer_email, kind, self.email).mkdir(parents=True, exist_ok=True)

    def _get_peers_json(self, force_download: bool = False) -> dict[str, dict[str, Any]]:
        path = self._site() / PEERS_FILE
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _update_peer_state(self, peer_email: str, state: str, public_encryption_bundle: dict | None = None) -> None:
        with _LOCK:
            peers = self._get_peers_json()
            entry = peers.get(peer_email, {})
            entry["state"] = state
            if public_encryption_bundle is not None:
                entry["public_encryption_bundle"] = public_encryption_bundle
            peers[peer_email] = entry
            self._write(self._site() / PEERS_FILE, json.dumps(peers, indent=2, sort_keys=True))

    def get_peer_requests(self) -> list[str]:
        """Peers that created folders at my datasite and are neither accepted nor rejected."""
        root = self.spool / "p2p"
        asking: set[str] = set()
        if root.is_dir():
            for folder in root.iterdir():
                parts = folder.name.split("#")
                if len(parts) == 3 and parts[0] == self.email and folder.is_dir():
                    asking.add(parts[2])
        peers = self._get_peers_json()
        return sorted(p for p in asking if peers.get(p, {}).get("state") not in ("accepted", "rejected"))

    # ------------------------------------------- proposals (watcher → owner)
    def watcher_send_raw_bytes_to_inbox(self, recipient: str, filename: str, data: bytes) -> None:
        folder = self._p2p(recipient, "inbox", self.email)
        if not folder.is_dir():
            raise ValueError(f"no peer folder at {recipient}: add the peer first")
        self._write(folder / filename, data)

    def watcher_send_proposed_file_changes_message(self, proposed_file_change_message: ProposedFileChangesMessage):
        raise NotImplementedError("sent through ConnectionRouter.watcher_send_proposed_file_changes_message")

    def owner_download_next_raw_proposed_message_from_inbox(self, sender_email: str) -> tuple[bytes, str] | None:
        folder = self._p2p(self.email, "inbox", sender_email)
        named: list[tuple[float, Path]] = []
        for path in _files(folder):
            try:
                named.append((MessageFileName.from_string(path.name).submitted_timestamp, path))
            except FileNameParseError:
                continue
        if not named:
            return None
        _, first = min(named, key=lambda item: (item[0], item[1].name))
        return first.read_bytes(), self._id(first)

    def owner_remove_proposed_filechange_message_from_inbox(self, message: ProposedFileChangesMessage) -> None:
        file_id = message.platform_id
        source = (
            self._path(file_id)
            if file_id
            else self._p2p(self.email, "inbox", message.sender_email) / message.message_filename.as_string()
        )
        archive = self.spool / "archive" / f"{_check_email(message.sender_email)}#{self.email}"
        archive.mkdir(parents=True, exist_ok=True)
        if source.exists():
            os.replace(source, archive / source.name)

    # ------------------------------------------------ events (owner → watcher)
    def owner_write_raw_bytes_to_outbox(self, recipient: str, filename: str, data: bytes) -> None:
        folder = self._p2p(self.email, "outbox", recipient)
        if not folder.is_dir():
            raise ValueError(f"Outbox folder for {recipient} not found")
        self._write(folder / filename, data)

    def _outbox_events(self, peer_email: str, since_timestamp: float | None) -> list[tuple[float, Path]]:
        out = []
        for path in _files(self._p2p(peer_email, "outbox", self.email)):
            ts = _event_timestamp(path.name)
            if ts is not None and (since_timestamp is None or ts > since_timestamp):
                out.append((ts, path))
        return sorted(out, key=lambda item: (item[0], item[1].name))

    def watcher_download_raw_events_from_outbox(self, peer_email: str, since_timestamp: float | None) -> list[bytes]:
        return [path.read_bytes() for _, path in self._outbox_events(peer_email, since_timestamp)]

    def watcher_get_outbox_file_metadatas(self, peer_email: str, since_timestamp: float | None) -> list[dict]:
        return [
            {"file_id": self._id(path), "file_name": path.name, "timestamp": ts}
            for ts, path in self._outbox_events(peer_email, since_timestamp)
        ]

    def _get_own_datasite_outbox_id(self, peer_email: str) -> str | None:
        """Called by ``DatasiteOwnerSyncer.compact_outbox_if_needed`` (Drive folder id → our spool path)."""
        folder = self._p2p(self.email, "outbox", peer_email)
        return self._id(folder) if folder.is_dir() else None

    def get_file_metadatas_from_folder(self, folder_id: str, since_timestamp: float | None = None) -> list[dict]:
        """Drive-shaped listing (``id``, ``name``) of a folder, newest name first, as the compaction expects."""
        out = []
        for path in sorted(_files(self._path(folder_id)), key=lambda p: p.name, reverse=True):
            ts = _event_timestamp(path.name)
            if since_timestamp is None or ts is None or ts > since_timestamp:
                out.append({"id": self._id(path), "name": path.name})
        return out

    # ------------------------------------------------------ owner's event log
    def _own_events(self, since_timestamp: float | None = None) -> list[Path]:
        found = []
        for path in _files(self._site() / "events"):
            ts = _event_timestamp(path.name)
            if ts is not None and (since_timestamp is None or ts > since_timestamp):
                found.append((ts, path))
        return [path for _, path in sorted(found, key=lambda item: (item[0], item[1].name))]

    def owner_write_raw_bytes_to_syftbox(self, filename: str, data: bytes) -> str:
        return self._write(self._site() / "events" / filename, data)

    def owner_download_raw_bytes_by_id(self, file_id: str) -> bytes:
        return self.download_file(file_id)

    def owner_get_all_accepted_event_file_ids(self, since_timestamp: float | None = None) -> list[str]:
        return [self._id(p) for p in self._own_events(since_timestamp)]

    def owner_download_all_raw_events_from_syftbox(self) -> list[bytes]:
        return [p.read_bytes() for p in self._own_events()]

    def download_raw_events_since_timestamp(self, since_timestamp: float) -> list[bytes]:
        return [p.read_bytes() for p in self._own_events(since_timestamp)]

    def get_events_count_since_checkpoint(self, checkpoint_timestamp: float | None) -> int:
        return len(self._own_events(checkpoint_timestamp))

    # ------------------------------------------------------------ checkpoints
    def _checkpoints(self, prefix: str) -> list[Path]:
        full = f"{CHECKPOINT_FILENAME_PREFIX}_"
        out = []
        for path in _files(self._site() / "checkpoints"):
            incremental = path.name.startswith(INCREMENTAL_CHECKPOINT_PREFIX)
            if (prefix == INCREMENTAL_CHECKPOINT_PREFIX and incremental) or (
                prefix == CHECKPOINT_FILENAME_PREFIX and path.name.startswith(full)
            ):
                out.append(path)
        return out

    def upload_raw_checkpoint(self, filename: str, data: bytes) -> str:
        new_id = self._write(self._site() / "checkpoints" / filename, data)
        for path in self._checkpoints(CHECKPOINT_FILENAME_PREFIX):
            if self._id(path) != new_id:
                path.unlink(missing_ok=True)
        return new_id

    def download_raw_latest_checkpoint(self) -> bytes | None:
        stamped = [(Checkpoint.filename_to_timestamp(p.name), p) for p in self._checkpoints(CHECKPOINT_FILENAME_PREFIX)]
        valid = [(ts, p) for ts, p in stamped if ts is not None]
        return max(valid, key=lambda item: item[0])[1].read_bytes() if valid else None

    def upload_raw_incremental_checkpoint(self, filename: str, data: bytes) -> str:
        return self._write(self._site() / "checkpoints" / filename, data)

    def download_all_raw_incremental_checkpoints(self) -> list[bytes]:
        return [p.read_bytes() for p in self._checkpoints(INCREMENTAL_CHECKPOINT_PREFIX)]

    def get_incremental_checkpoint_count(self) -> int:
        return len(self._checkpoints(INCREMENTAL_CHECKPOINT_PREFIX))

    def get_next_incremental_sequence_number(self) -> int:
        seqs = [
            IncrementalCheckpoint.filename_to_sequence_number(p.name)
            for p in self._checkpoints(INCREMENTAL_CHECKPOINT_PREFIX)
        ]
        return max([s for s in seqs if s is not None], default=0) + 1

    def delete_all_incremental_checkpoints(self) -> None:
        for path in self._checkpoints(INCREMENTAL_CHECKPOINT_PREFIX):
            path.unlink(missing_ok=True)

    # ---------------------------------------------------------- rolling state
    def _rolling(self) -> list[Path]:
        return [p for p in _files(self._site() / "rolling") if p.name.startswith(ROLLING_STATE_FILENAME_PREFIX)]

    def upload_raw_rolling_state(self, filename: str, data: bytes) -> str:
        new_id = self._write(self._site() / "rolling" / filename, data)
        for path in self._rolling():
            if self._id(path) != new_id:
                path.unlink(missing_ok=True)
        return new_id

    def download_raw_rolling_state(self) -> bytes | None:
        stamped = [(RollingState.filename_to_timestamp(p.name), p) for p in self._rolling()]
        valid = [(ts, p) for ts, p in stamped if ts is not None]
        return max(valid, key=lambda item: item[0])[1].read_bytes() if valid else None

    def delete_rolling_state(self) -> None:
        for path in self._rolling():
            path.unlink(missing_ok=True)

    # --------------------------------------------------------------- versions
    def write_version_file(self, version_info: Any) -> None:
        self._write(self._site() / VERSION_FILE, version_info.to_json())

    def _read_version(self, email: str) -> Any:
        from syft.sync.version.version_info import VersionInfo

        path = self._site(email) / VERSION_FILE
        try:
            return VersionInfo.from_json(path.read_text())
        except (OSError, ValueError):
            return None

    def read_own_version_file(self) -> Any:
        return self._read_version(self.email)

    def read_peer_version_file(self, peer_email: str) -> Any:
        return self._read_version(peer_email)

    def share_version_file_with_peer(self, peer_email: str) -> None:
        return None

    # -------------------------------------------------------- encryption keys
    def write_encryption_bundle(self, peer_email: str, bundle_json: str) -> None:
        self._write(self._site() / "bundles" / f"encryption_bundle_{self.email}_for_{peer_email}.json", bundle_json)

    def share_encryption_bundles_folder(self, peer_email: str) -> None:
        return None

    def read_peer_encryption_bundle(self, peer_email: str) -> str | None:
        path = self._site(peer_email) / "bundles" / f"encryption_bundle_{peer_email}_for_{self.email}.json"
        return path.read_text() if path.exists() else None

    # ------------------------------------------------------------ collections
    def _collections_root(self, email: str | None = None) -> Path:
        return self._site(email) / "collections"

    def _collection(self, prefix: str, tag: str, content_hash: str, email: str | None = None) -> Path:
        name = f"{prefix}_{tag}_{content_hash}"
        if "/" in name or name.startswith("."):
            raise ValueError("invalid collection name")
        return self._collections_root(email) / name

    def _acl(self, folder: Path) -> dict[str, Any]:
        try:
            acl = json.loads((folder / ACL_FILE).read_text())
        except (OSError, ValueError):
            acl = {}
        return {"any": bool(acl.get("any", False)), "users": list(acl.get("users", []))}

    def _parse(self, prefix: str, name: str) -> tuple[str, str] | None:
        if not name.startswith(f"{prefix}_"):
            return None
        tag, sep, content_hash = name[len(prefix) + 1 :].rpartition("_")
        return (tag, content_hash) if sep and tag and content_hash else None

    def owner_create_collection_folder(self, prefix: str, tag: str, content_hash: str, owner_email: str) -> str:
        folder = self._collection(prefix, tag, content_hash)
        folder.mkdir(parents=True, exist_ok=True)
        return self._id(folder)

    def owner_tag_collection_as_any(self, prefix: str, tag: str, content_hash: str) -> None:
        folder = self._collection(prefix, tag, content_hash)
        acl = self._acl(folder)
        acl["any"] = True
        self._write(folder / ACL_FILE, json.dumps(acl))

    def owner_share_collection(self, prefix: str, tag: str, content_hash: str, users: list[str]) -> None:
        folder = self._collection(prefix, tag, content_hash)
        with _LOCK:
            acl = self._acl(folder)
            acl["users"] = sorted(set(acl["users"]) | set(users))
            self._write(folder / ACL_FILE, json.dumps(acl))

    def owner_upload_collection_files(self, prefix: str, tag: str, content_hash: str, files: dict[str, bytes]) -> None:
        folder = self._collection(prefix, tag, content_hash)
        for name, content in files.items():
            base = Path(name).name
            if base.startswith("."):
                raise ValueError("hidden file names are reserved")
            self._write(folder / base, content)

    def _owned(self, prefix: str) -> list[tuple[Path, str, str]]:
        root = self._collections_root()
        out = []
        if root.is_dir():
            for folder in sorted(root.iterdir()):
                parsed = self._parse(prefix, folder.name)
                if parsed and folder.is_dir():
                    out.append((folder, *parsed))
        return out

    def owner_list_collections(self, prefix: str) -> list[str]:
        return [tag for _, tag, _ in self._owned(prefix)]

    def owner_list_all_collections_with_permissions(self, prefix: str) -> list[FileCollection]:
        return [
            FileCollection(folder_id=self._id(f), tag=tag, content_hash=h, has_any_permission=self._acl(f)["any"])
            for f, tag, h in self._owned(prefix)
        ]

    def owner_delete_collection(self, prefix: str, tag: str) -> None:
        for folder, found, _ in self._owned(prefix):
            if found == tag:
                shutil.rmtree(folder, ignore_errors=True)

    def watcher_list_collections(self, prefix: str) -> list[dict]:
        """Collections other datasites shared with me by name (Drive semantics: ``any`` alone is not listed)."""
        sites = self.spool / "sites"
        out: list[dict] = []
        if not sites.is_dir():
            return out
        for site in sorted(sites.iterdir()):
            if site.name == self.email or not (site / "collections").is_dir():
                continue
            for folder in sorted((site / "collections").iterdir()):
                parsed = self._parse(prefix, folder.name)
                if parsed and self.email in self._acl(folder)["users"]:
                    out.append({"owner_email": site.name, "tag": parsed[0], "content_hash": parsed[1]})
        return out

    def _readable_collection(self, prefix: str, tag: str, content_hash: str, owner_email: str) -> Path:
        folder = self._collection(prefix, tag, content_hash, owner_email)
        if not folder.is_dir() or (owner_email != self.email and self.email not in self._acl(folder)["users"]):
            raise ValueError(f"Collection {tag} with hash {content_hash} not found")
        return folder

    def watcher_download_collection(
        self, prefix: str, tag: str, content_hash: str, owner_email: str
    ) -> dict[str, bytes]:
        folder = self._readable_collection(prefix, tag, content_hash, owner_email)
        return {p.name: p.read_bytes() for p in _files(folder)}

    def watcher_get_collection_file_metadatas(
        self, prefix: str, tag: str, content_hash: str, owner_email: str
    ) -> list[dict]:
        folder = self._readable_collection(prefix, tag, content_hash, owner_email)
        return [{"file_id": self._id(p), "file_name": p.name} for p in _files(folder)]

    def watcher_download_collection_file(self, file_id: str) -> bytes:
        return self.download_file(file_id)

    # -------------------------------------------------------------- deletion
    def gather_all_file_and_folder_ids(self) -> list[str]:
        site = self._site()
        ids = [self._id(p) for p in site.rglob("*")] if site.is_dir() else []
        root = self.spool / "p2p"
        if root.is_dir():
            ids += [self._id(p) for p in root.iterdir() if p.name.split("#")[-1] == self.email]
        return ids

    def find_orphaned_message_files(self) -> list[str]:
        return []

    def delete_file_by_id(self, file_id: str, **_: Any) -> None:
        path = self._path(file_id)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def delete_multiple_files_by_ids(self, file_ids: list[str], **_: Any) -> None:
        for file_id in sorted(file_ids, key=len, reverse=True):
            self.delete_file_by_id(file_id)


VeilboxSpoolConfig.connection_type = VeilboxSpoolConnection
