"""Repository stores over the Airflow provider hooks: S3 (S3Hook), Azure Blob (WasbHook), GCS (GCSHook).

Each implements copydata.repo.store.Store, so the repository has one code path over these and PosixStore.
Credentials and endpoints come from the Airflow connection; the hooks are imported only when a store of
that kind is built, so `store_for("file:///...")` never imports a provider.

Create-only puts (the repository's commit rule) map to each service's conditional write:
S3 `IfNoneMatch="*"` (with a HEAD-then-PUT fallback for S3-compatible services that answer 501),
Azure `overwrite=False` (If-None-Match: *), GCS `if_generation_match=0`. Repository chunks stay below
8 MiB, so GCSHook-style clients send them as simple uploads; fake-gcs-server ignores the precondition on
resumable (> 8 MiB) uploads (real GCS honours it on both).
"""

from __future__ import annotations

import contextlib
import copy
import queue
from collections.abc import Iterator
from typing import Any, Self
from urllib.parse import urlparse

from copydata.repo.store import AlreadyExists, NotFound, ObjectInfo, PosixStore, Store


class _Prefixed:
    """Maps repository keys to object names under an optional prefix ("a/b" -> "prefix/a/b")."""

    def __init__(self, scheme: str, container: str, prefix: str) -> None:
        self.scheme = scheme
        self.container = container
        self.prefix = prefix.strip("/")
        self.url = f"{scheme}://{container}/{self.prefix}".rstrip("/")

    def with_prefix(self, prefix: str) -> Self:
        """The same bucket and client under another prefix (e.g. one repository per application)."""
        other = copy.copy(self)
        _Prefixed.__init__(other, self.scheme, self.container, prefix)
        return other

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key(self, name: str) -> str:
        return name[len(self.prefix) + 1:] if self.prefix else name


class S3Store(_Prefixed):
    """Amazon S3 (or an S3-compatible service) through S3Hook's boto3 client (thread-safe)."""

    def __init__(self, conn_id: str, bucket: str, prefix: str = "") -> None:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        super().__init__("s3", bucket, prefix)
        self.hook = S3Hook(aws_conn_id=conn_id)
        self.client = self.hook.get_conn()
        self._conditional = True   # False once the service answered 501 to If-None-Match

    def _code(self, err: Exception) -> str:
        return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))

    def put(self, key: str, data: bytes, create_only: bool = False) -> None:
        name = self._name(key)
        if create_only and self._conditional:
            try:
                self.client.put_object(Bucket=self.container, Key=name, Body=data, IfNoneMatch="*")
                return
            except self.client.exceptions.ClientError as e:
                code = self._code(e)
                if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise AlreadyExists(key) from None
                if code not in ("NotImplemented", "501"):
                    raise
                self._conditional = False
        if create_only and self.exists(key):   # racy fallback, see the module docstring
            raise AlreadyExists(key)
        self.client.put_object(Bucket=self.container, Key=name, Body=data)

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.container, Key=self._name(key))["Body"].read()
        except self.client.exceptions.ClientError as e:
            if self._code(e) in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(key) from None
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.container, Key=self._name(key))
            return True
        except self.client.exceptions.ClientError as e:
            if self._code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.container,
                                                                       Prefix=self._name(prefix))
        for page in pages:
            for obj in page.get("Contents", []):
                yield ObjectInfo(self._key(obj["Key"]), obj["Size"], obj["LastModified"].timestamp())

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.container, Key=self._name(key))

    def ensure_bucket(self) -> None:
        if not self.hook.check_for_bucket(self.container):
            self.hook.create_bucket(bucket_name=self.container)


class AzureBlobStore(_Prefixed):
    """Azure Blob Storage through WasbHook's BlobServiceClient (thread-safe)."""

    def __init__(self, conn_id: str, container: str, prefix: str = "") -> None:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        super().__init__("wasb", container, prefix)
        self.hook = WasbHook(wasb_conn_id=conn_id)
        self.client = self.hook.blob_service_client.get_container_client(container)
        self._exists_error, self._missing_error = ResourceExistsError, ResourceNotFoundError

    def put(self, key: str, data: bytes, create_only: bool = False) -> None:
        try:
            self.client.upload_blob(self._name(key), data, overwrite=not create_only)
        except self._exists_error:
            raise AlreadyExists(key) from None

    def get(self, key: str) -> bytes:
        try:
            return self.client.download_blob(self._name(key)).readall()
        except self._missing_error:
            raise NotFound(key) from None

    def exists(self, key: str) -> bool:
        return self.client.get_blob_client(self._name(key)).exists()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for blob in self.client.list_blobs(name_starts_with=self._name(prefix)):
            yield ObjectInfo(self._key(blob.name), blob.size, blob.last_modified.timestamp())

    def delete(self, key: str) -> None:
        with contextlib.suppress(self._missing_error):
            self.client.delete_blob(self._name(key))

    def ensure_bucket(self) -> None:
        if not self.client.exists():
            self.client.create_container()


class GcsStore(_Prefixed):
    """Google Cloud Storage through GCSHook. storage.Client objects (requests sessions) are not shared
    between threads at the same time: each call borrows one from a small pool."""

    def __init__(self, conn_id: str, bucket: str, prefix: str = "") -> None:
        from airflow.providers.google.cloud.hooks.gcs import GCSHook
        from google.api_core.exceptions import NotFound as GcsNotFound
        from google.api_core.exceptions import PreconditionFailed

        super().__init__("gs", bucket, prefix)
        self.conn_id = conn_id
        self.hook = GCSHook(gcp_conn_id=conn_id)
        self._hook_class = GCSHook
        self._precondition_failed, self._not_found = PreconditionFailed, GcsNotFound
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle.put(self.hook.get_conn().bucket(bucket))

    @contextlib.contextmanager
    def _bucket(self) -> Iterator[Any]:
        try:
            bucket = self._idle.get_nowait()
        except queue.Empty:
            bucket = self._hook_class(gcp_conn_id=self.conn_id).get_conn().bucket(self.container)
        try:
            yield bucket
        finally:
            self._idle.put(bucket)

    def put(self, key: str, data: bytes, create_only: bool = False) -> None:
        with self._bucket() as bucket:
            try:
                bucket.blob(self._name(key)).upload_from_string(
                    data, content_type="application/octet-stream", if_generation_match=0 if create_only else None)
            except self._precondition_failed:
                raise AlreadyExists(key) from None

    def get(self, key: str) -> bytes:
        with self._bucket() as bucket:
            try:
                return bucket.blob(self._name(key)).download_as_bytes()
            except self._not_found:
                raise NotFound(key) from None

    def exists(self, key: str) -> bool:
        with self._bucket() as bucket:
            return bucket.blob(self._name(key)).exists()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._bucket() as bucket:
            for blob in bucket.client.list_blobs(self.container, prefix=self._name(prefix)):
                yield ObjectInfo(self._key(blob.name), blob.size, blob.updated.timestamp())

    def delete(self, key: str) -> None:
        with self._bucket() as bucket, contextlib.suppress(self._not_found):
            bucket.blob(self._name(key)).delete()

    def ensure_bucket(self) -> None:
        with self._bucket() as bucket:
            if not bucket.exists():
                self.hook.create_bucket(bucket_name=self.container)


DEFAULT_CONN_IDS = {"s3": "aws_default", "wasb": "wasb_default", "gs": "google_cloud_default"}
SCHEMES = {"s3": "s3", "s3a": "s3", "wasb": "wasb", "wasbs": "wasb", "az": "wasb", "gs": "gs", "gcs": "gs"}


def store_for(url: str, conn_id: str | None = None) -> Store:
    """A store for s3://bucket/prefix, wasb://container/prefix, gs://bucket/prefix or file:///path,
    using the Airflow connection conn_id (default: the provider's default connection id)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URL with a host: {url}")
        return PosixStore(parsed.path)
    kind = SCHEMES.get(parsed.scheme)
    if kind is None or not parsed.netloc:
        raise ValueError(f"unsupported repository URL {url!r}: use s3://, wasb://, gs:// or file://")
    conn_id = conn_id or DEFAULT_CONN_IDS[kind]
    cls = {"s3": S3Store, "wasb": AzureBlobStore, "gs": GcsStore}[kind]
    return cls(conn_id, parsed.netloc, parsed.path.strip("/"))


def key_from_connection(conn_id: str) -> bytes:
    """The repository's master key from an Airflow connection: its password, or extra "key"
    (64 hex digits or base64 of 32 bytes)."""
    from airflow.sdk import BaseHook

    from copydata.repo.crypto import parse_key

    conn = BaseHook.get_connection(conn_id)
    secret = conn.password or (conn.extra_dejson or {}).get("key")
    if not secret:
        raise ValueError(f"connection {conn_id!r} holds no repository key (password or extra 'key')")
    return parse_key(secret)
