"""Operations on the sandbox's object storage: replication control, ransomware, scans, version restore.

A handle over the state file's ports, used by the Sandbox (`sandbox.objects`) and, through it,
by the chaos actions; the stores and the replicator themselves run in their own processes
(drillkit.targets.sandbox.s3_service).
"""

from __future__ import annotations

import os
import random
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

from drillkit.errors import FaultError, SandboxError
from drillkit.evidence import OBJECT_KEY_PREFIX
from drillkit.targets.capabilities import ObjectAttack, ObjectReplicationStatus, ObjectRestore, ObjectScan
from drillkit.targets.sandbox import s3_service as obj
from drillkit.net import http_json
from drillkit.targets.sandbox.state import SandboxState

ATTACK_MODES = ("overwrite", "delete", "mixed")
SCAN_THREADS = 8


class ObjectStorage:
    def __init__(self, state: SandboxState):
        if state.object_replicator_port is None:
            raise FaultError("this sandbox has no object store (set system.objects in the scenario)")
        self.state = state

    def client(self, region: str):
        try:
            port = self.state.regions[region].s3_port
        except KeyError:
            raise FaultError(f"no region {region!r}") from None
        if port is None:
            raise FaultError(f"region {region} has no object store")
        return obj.s3_client(port)

    # -- replication ----------------------------------------------------------------------

    def replication_status(self) -> ObjectReplicationStatus:
        return ObjectReplicationStatus(**self._replicator("GET"))

    def configure_replication(self, delay: float | None = None, delete_markers: bool | None = None,
                              paused: bool | None = None, disabled: bool | None = None) -> ObjectReplicationStatus:
        body = {k: v for k, v in (("delay", delay), ("delete_markers", delete_markers), ("paused", paused),
                                  ("disabled", disabled)) if v is not None}
        return ObjectReplicationStatus(**self._replicator("POST", body))

    def _replicator(self, method: str, body: dict | None = None) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.state.object_replicator_port}/"
        try:
            status, doc = http_json(url, method, body)
        except (OSError, urllib.error.URLError) as exc:
            raise SandboxError(f"the object replicator does not answer: {exc}") from None
        if status != 200:
            raise FaultError(f"the object replicator refused: {doc.get('error', status)}")
        return doc

    def wait_replicated(self, timeout: float = 30) -> ObjectReplicationStatus:
        """Until every change the source acknowledged before this call is in the destination."""
        deadline = time.monotonic() + timeout
        head = self.feed_head(self.state.object_source)
        while True:
            status = self.replication_status()
            if status.seen >= head and status.backlog == 0:
                return status
            if time.monotonic() > deadline:
                raise FaultError(f"object replication backlog still {status.backlog} after {timeout:.0f}s "
                                 f"(last error: {status.last_error})")
            time.sleep(0.05)

    def feed_head(self, region: str) -> int:
        """How many changes the region's store has acknowledged so far."""
        port = self.state.regions[region].s3_port
        try:
            _, doc = http_json(f"http://127.0.0.1:{port}{obj.FEED}?head=1")
        except (OSError, urllib.error.URLError) as exc:
            raise FaultError(f"the object store of region {region} does not answer: {exc}") from None
        return int(doc["seq"])

    # -- ransomware -----------------------------------------------------------------------

    def attack(self, region: str, count: int, mode: str = "mixed", seed: int | None = None) -> ObjectAttack:
        """Ransomware with stolen credentials: overwrite (encrypt) or delete `count` current objects,
        straight through the S3 API, as the app never would. `t` is the last acknowledged change."""
        if mode not in ATTACK_MODES:
            raise FaultError(f"attack mode must be one of {', '.join(ATTACK_MODES)}, not {mode!r}")
        client = self.client(region)
        keys = sorted(obj.current_objects(client))
        if not keys:
            raise FaultError(f"no objects in region {region} to attack")
        victims = random.Random(seed).sample(keys, min(int(count), len(keys)))
        overwritten, deleted = [], []
        t0 = time.time()
        for i, key in enumerate(victims):
            if mode == "delete" or (mode == "mixed" and i % 2):
                client.delete_object(Bucket=obj.BUCKET, Key=key)
                deleted.append(key)
            else:
                client.put_object(Bucket=obj.BUCKET, Key=key, Body=b"ENCRYPTED:" + os.urandom(48),
                                  Metadata={"ransom": "pay-up"})
                overwritten.append(key)
        return ObjectAttack(region, tuple(overwritten), tuple(deleted), t0, time.time())

    def scan(self, region: str) -> ObjectScan:
        """Checksum scan: current objects whose body no longer matches the checksum written with it,
        and keys whose newest version is a delete marker over data that verified."""
        client = self.client(region)
        by_key = obj.versions_by_key(client)
        current = [k for k, versions in by_key.items() if not versions[0]["delete_marker"]]

        def tampered(key: str) -> bool:
            found = obj.read_object(client, key)
            return found is not None and not obj.verifies(*found)

        with ThreadPoolExecutor(SCAN_THREADS) as pool:
            bad = [k for k, t in zip(current, pool.map(tampered, current)) if t]
        deleted = [k for k, versions in by_key.items()
                   if versions[0]["delete_marker"] and any(not v["delete_marker"] for v in versions)]
        return ObjectScan(tuple(sorted(bad)), tuple(sorted(deleted)))

    def restore_versions(self, region: str, keys: list[str] | None = None) -> ObjectRestore:
        """Put back the newest version that verifies as the current one (a copy, which replicates;
        removing a delete marker by version id would not). Keys with no good version are reported."""
        client = self.client(region)
        t0 = time.time()
        by_key = obj.versions_by_key(client)
        wanted = keys if keys is not None else list(by_key)

        def restore(key: str) -> str:
            versions = by_key.get(key, [])
            if not versions:
                return "missing"
            head = versions[0]
            if not head["delete_marker"]:
                body_meta = obj.read_object(client, key)
                if body_meta is not None and obj.verifies(*body_meta):
                    return "intact"
            for v in versions[1:]:
                if v["delete_marker"]:
                    continue
                found = obj.read_object(client, key, v["VersionId"])
                if found is not None and obj.verifies(*found):
                    client.copy_object(Bucket=obj.BUCKET, Key=key,
                                       CopySource={"Bucket": obj.BUCKET, "Key": key, "VersionId": v["VersionId"]})
                    return "undeleted" if head["delete_marker"] else "reverted"
            return "unrecoverable"

        with ThreadPoolExecutor(SCAN_THREADS) as pool:
            outcomes = dict(zip(wanted, pool.map(restore, wanted)))
        by_outcome: dict[str, list[str]] = {}
        for key, outcome in sorted(outcomes.items()):
            by_outcome.setdefault(outcome, []).append(key)
        return ObjectRestore(region, tuple(by_outcome.get("reverted", [])), tuple(by_outcome.get("undeleted", [])),
                             tuple(by_outcome.get("unrecoverable", []) + by_outcome.get("missing", [])),
                             t=time.time(), took_s=time.time() - t0)

    # -- audit ----------------------------------------------------------------------------

    def final_state(self, region: str) -> Iterator[tuple[str, str]]:
        """Every current object of the region, as `obj/<key>` and the SHA-256 of its body."""
        client = self.client(region)
        keys = sorted(obj.current_objects(client))

        def digest(key: str) -> str | None:
            found = obj.read_object(client, key)
            return None if found is None else obj.sha256(found[0])

        with ThreadPoolExecutor(SCAN_THREADS) as pool:
            for key, checksum in zip(keys, pool.map(digest, keys)):
                if checksum is not None:
                    yield f"{OBJECT_KEY_PREFIX}{key}", checksum
