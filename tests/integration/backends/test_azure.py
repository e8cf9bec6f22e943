# SPDX-License-Identifier: GPL-3.0-or-later
"""azure:// against a real Azure Blob Storage emulator (Azurite) on loopback.

Azurite comes from npm: ``scripts/setup-azurite.sh`` installs it into ``.cache/azurite``. Without
it these tests skip, or fail when ``CI`` is set.
"""
import json
import logging
import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from conformance import check_cycle, check_interface
from servers import ROOT, ServerProcess, free_port
from treeutil import cairn, write

from cairn.backends import BackendOptions, open_backend, open_raw
from cairn.logs import quiet_libraries

AZURITE_BLOB = os.path.join(ROOT, ".cache", "azurite", "node_modules", ".bin", "azurite-blob")
# Azurite's well-known development account (published in Azurite's and Azure's documentation)
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# valid base64 of the right length, but not the account's key
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk4NDIxMQ=="


class Azurite(ServerProcess):
    def __init__(self, workdir):
        port = free_port()
        data = os.path.join(os.fspath(workdir), "data")
        os.makedirs(data, exist_ok=True)
        super().__init__([AZURITE_BLOB, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", data,
                          "--skipApiVersionCheck", "--silent", "--disableTelemetry"],
                         port, os.path.join(os.fspath(workdir), "azurite.log"),
                         # only the well-known dev account, whatever the caller's environment says
                         env={k: v for k, v in os.environ.items() if k != "AZURITE_ACCOUNTS"})

    @property
    def account_url(self):
        return f"http://127.0.0.1:{self.port}/{DEV_ACCOUNT}"

    @property
    def cli_env(self):
        """The CLI's environment: the dev account; other AZURE_* of the caller blanked."""
        return {"AZURE_ACCOUNT_NAME": DEV_ACCOUNT, "AZURE_ACCOUNT_KEY": DEV_KEY,
                "AZURE_ACCOUNT_URL": self.account_url, "AZURE_CONNECTION_STRING": "",
                "AZURE_SHARED_ACCESS_SIGNATURE": "", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}

    def service(self):
        from azure.core.credentials import AzureNamedKeyCredential
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient(self.account_url, credential=AzureNamedKeyCredential(DEV_ACCOUNT, DEV_KEY))

    def blobs(self, container):
        with self.service() as svc:
            return sorted(b.name for b in svc.get_container_client(container).list_blobs())


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    if not os.access(AZURITE_BLOB, os.X_OK):
        msg = f"Azurite is not installed at {AZURITE_BLOB}; run scripts/setup-azurite.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    server = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield server
    server.stop()


def _opts(az, **kw):
    return BackendOptions(env=az.cli_env, **kw)


def test_interface(azurite, tmp_path):
    assert check_interface("azure://cairn-iface/some/prefix", _opts(azurite), tmp_path) == []
    assert azurite.blobs("cairn-iface") == []          # nothing left, nothing outside the prefix


def test_cycle_encrypted(azurite, tmp_path):
    check_cycle("azure://cairn-cycle/host1", [], tmp_path, env=azurite.cli_env)
    names = azurite.blobs("cairn-cycle")
    assert names and all(n.startswith("host1/duplicity-") for n in names)
    assert any(n.endswith(".difftar.gpg") for n in names)


def test_prefix_tier_and_unencrypted_restore(azurite, tmp_path):
    url = "azure://cairn-prefix/some/prefix"
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"hello\n")
    write(str(src / "big.bin"), os.urandom(9 << 20))        # one volume above the single-put size
    common = ["--no-encryption", "--archive-dir", tmp_path / "c", "--azure-blob-tier", "Cool",
              "--no-adaptive-compression", "--compress-level", "0"]
    full = json.loads(cairn("full", "--json", *common, src, url, env=azurite.cli_env).stdout)
    assert full["type"] == "full"
    names = azurite.blobs("cairn-prefix")
    assert names and all(n.startswith("some/prefix/duplicity-") for n in names), names
    with azurite.service() as svc:
        cc = svc.get_container_client("cairn-prefix")
        assert {cc.get_blob_client(n).get_blob_properties().blob_tier for n in names} == {"Cool"}
        # the 9 MiB volume went up as blocks (Put Block List), the small files as one Put Blob
        vol = [n for n in names if ".vol1." in n][0]
        committed, uncommitted = cc.get_blob_client(vol).get_block_list("all")
        assert len(committed) >= 3 and not uncommitted
        manifest = [n for n in names if n.endswith(".manifest")][0]
        assert cc.get_blob_client(manifest).get_block_list("all") == ([], [])
        # a deeper "directory" and a blob beside the prefix are not part of the target
        cc.upload_blob("some/prefix/deeper/duplicity-full.20200101T000000Z.manifest", b"x")
        cc.upload_blob("some/other", b"y")
    be = open_raw(url, _opts(azurite))
    try:
        listed = be.list()
    finally:
        be.close()
    assert sorted(listed) == sorted(n[len("some/prefix/"):] for n in names)
    r = cairn("restore", *common, url, tmp_path / "r", env=azurite.cli_env)
    assert r.returncode == 0
    assert (tmp_path / "r" / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    assert (tmp_path / "r" / "a.txt").read_bytes() == b"hello\n"


def test_upload_goes_through_the_rate_limit(azurite, tmp_path):
    """put() reads through open_upload(), so --max-upload-rate holds for block uploads too."""
    data = os.urandom(9 << 20)
    (tmp_path / "big").write_bytes(data)
    be = open_backend("azure://cairn-rate", _opts(azurite, max_upload_rate=16 << 20))
    try:
        start = time.monotonic()
        be.put(str(tmp_path / "big"), "big")
        elapsed = time.monotonic() - start
        be.get("big", str(tmp_path / "back"))
    finally:
        be.close()
    assert (tmp_path / "back").read_bytes() == data
    # 9 MiB at 16 MiB/s with a 1.6 MiB burst: at least (9 - 1.6) / 16 s of waiting
    assert elapsed >= 0.4, elapsed


def test_wrong_key_fails_with_52_without_the_key(azurite, tmp_path):
    src = tmp_path / "src"
    write(str(src / "a"), b"a")
    env = dict(azurite.cli_env, AZURE_ACCOUNT_KEY=WRONG_KEY)
    r = cairn("full", "--no-encryption", "--archive-dir", tmp_path / "c", src, "azure://cairn-wrongkey",
              check=False, env=env)
    assert r.returncode == 52, r.stderr
    assert b"access denied" in r.stderr
    out = r.stdout + r.stderr
    assert WRONG_KEY.encode() not in out and DEV_KEY.encode() not in out
    # a key that is not even base64 fails the same way, before reaching the server
    env["AZURE_ACCOUNT_KEY"] = "not-base64-secret!"
    r = cairn("full", "--no-encryption", "--archive-dir", tmp_path / "c", src, "azure://cairn-wrongkey",
              check=False, env=env)
    assert r.returncode == 52, r.stderr
    assert b"not-base64-secret!" not in r.stdout + r.stderr


def test_key_never_in_debug_output(azurite, tmp_path):
    src = tmp_path / "src"
    write(str(src / "a"), b"a" * 1000)
    common = ["-v", "debug", "--no-encryption", "--archive-dir", tmp_path / "c"]
    r = cairn("full", *common, src, "azure://cairn-quiet", env=azurite.cli_env)
    r2 = cairn("restore", *common, "azure://cairn-quiet", tmp_path / "r", env=azurite.cli_env)
    for res in (r, r2):
        out = res.stdout + res.stderr
        assert DEV_KEY.encode() not in out
        assert b"SharedKey" not in out and b"Authorization" not in out
    assert (tmp_path / "r" / "a").read_bytes() == b"a" * 1000


def test_sdk_logging_at_debug_shows_no_secrets(azurite, tmp_path, caplog):
    """Even with every logger at DEBUG in-process, no key or SAS signature reaches a log record,
    once logging is set up as every front end sets it up (the CLI, run-job and the modules
    call logs.quiet_libraries; importing an engine module changes no logger)."""
    sas = _account_sas(azurite)
    sig = [p for p in sas.split("&") if p.startswith("sig=")][0][4:]
    caplog.set_level(logging.DEBUG)
    quiet_libraries()
    sas_env = {"AZURE_ACCOUNT_NAME": DEV_ACCOUNT, "AZURE_SHARED_ACCESS_SIGNATURE": sas,
               "AZURE_ACCOUNT_URL": azurite.account_url}
    for env in (azurite.cli_env, sas_env):
        be = open_raw("azure://cairn-logs", BackendOptions(env=env))
        try:
            (tmp_path / "f").write_bytes(b"data")
            be.put(str(tmp_path / "f"), "f")
            be.get("f", str(tmp_path / "g"))
            assert be.list() == ["f"]
            be.delete(["f"])
        finally:
            be.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert DEV_KEY not in text and sig not in text


def _account_sas(az, **kw):
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas
    perms = kw.pop("permission", AccountSasPermissions(read=True, write=True, delete=True, list=True,
                                                       create=True, add=True))
    return generate_account_sas(DEV_ACCOUNT, DEV_KEY, ResourceTypes(service=True, container=True, object=True),
                                perms, datetime.now(timezone.utc) + timedelta(hours=1), **kw)


def test_sas_and_connection_string(azurite, tmp_path):
    payload = tmp_path / "p"
    payload.write_bytes(b"payload")
    sas = _account_sas(azurite)
    conn = (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={azurite.account_url};")
    envs = {
        "sas": {"AZURE_ACCOUNT_NAME": DEV_ACCOUNT, "AZURE_SHARED_ACCESS_SIGNATURE": "?" + sas,
                "AZURE_ACCOUNT_URL": azurite.account_url},
        "connection string": {"AZURE_CONNECTION_STRING": conn},
        "connection string with SAS": {"AZURE_CONNECTION_STRING":
                                       f"BlobEndpoint={azurite.account_url};SharedAccessSignature={sas}"},
    }
    for what, env in envs.items():
        be = open_raw("azure://cairn-creds/p", BackendOptions(env=env))
        try:
            be.put(str(payload), what.replace(" ", "-"))
            assert what.replace(" ", "-") in be.list(), what
        finally:
            be.close()
    assert len(azurite.blobs("cairn-creds")) == 3
    # a SAS for the container alone may not create containers; the existing one is used
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas
    csas = generate_container_sas(DEV_ACCOUNT, "cairn-creds", DEV_KEY,
                                  permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True),
                                  expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    be = open_raw("azure://cairn-creds/p", BackendOptions(env={
        "AZURE_ACCOUNT_NAME": DEV_ACCOUNT, "AZURE_SHARED_ACCESS_SIGNATURE": csas, "AZURE_ACCOUNT_URL": azurite.account_url}))
    try:
        be.put(str(payload), "container-sas")
        be.get("container-sas", str(tmp_path / "back"))
        assert (tmp_path / "back").read_bytes() == b"payload"
        be.delete(["container-sas"])
    finally:
        be.close()
    # a read-only SAS: writing is refused with 52, and the signature stays out of the message
    ro = _account_sas(azurite, permission=_perms(read=True, list=True))
    sig = [p for p in ro.split("&") if p.startswith("sig=")][0][4:]
    be = open_raw("azure://cairn-creds/p", BackendOptions(env={
        "AZURE_ACCOUNT_NAME": DEV_ACCOUNT, "AZURE_SHARED_ACCESS_SIGNATURE": ro, "AZURE_ACCOUNT_URL": azurite.account_url}))
    try:
        assert len(be.list()) == 3
        with pytest.raises(Exception) as info:
            be.put(str(payload), "refused")
    finally:
        be.close()
    assert getattr(info.value, "exit_code", None) == 52, info.value
    assert not info.value.transient
    assert sig not in str(info.value) and ro not in str(info.value)


def _perms(**kw):
    from azure.storage.blob import AccountSasPermissions
    return AccountSasPermissions(**kw)


def test_unreachable_endpoint_is_transient(tmp_path):
    from cairn.errors import BackendError
    port = free_port()          # nothing listens there
    env = {"AZURE_ACCOUNT_NAME": DEV_ACCOUNT, "AZURE_ACCOUNT_KEY": DEV_KEY,
           "AZURE_ACCOUNT_URL": f"http://127.0.0.1:{port}/{DEV_ACCOUNT}"}
    be = open_raw("azure://cairn-none", BackendOptions(env=env, timeout=5))
    try:
        with pytest.raises(BackendError) as info:
            be.list()
    finally:
        be.close()
    assert info.value.transient and DEV_KEY not in str(info.value)


def test_bad_urls_and_missing_credentials():
    from cairn.errors import UserError
    env = {"AZURE_ACCOUNT_NAME": DEV_ACCOUNT, "AZURE_ACCOUNT_KEY": DEV_KEY}
    for url in ("azure://", "azure://Upper-Case", "azure://ab", "azure://user:pw@cont"):
        with pytest.raises(UserError):
            open_raw(url, BackendOptions(env=env))
    with pytest.raises(UserError) as info:
        open_raw("azure://cont", BackendOptions(env={}))
    assert "AZURE_CONNECTION_STRING" in str(info.value)
    with pytest.raises(UserError):
        open_raw("azure://cont", BackendOptions(env=env, azure_blob_tier="Lukewarm"))


def test_error_classification():
    """How azure-core's exceptions map onto the transfer layer's retry decision and exit codes."""
    from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceNotFoundError,
                                       ServiceRequestError, ServiceResponseError)

    class Response:
        def __init__(self, status):
            self.status_code = status
            self.reason = "reason"
            self.headers = {}
            self.request = None

        def text(self, encoding=None):
            return ""

    sas = "se=2030-01-01&sp=rl&sv=2024-11-04&sig=SeCrEtSiGnAtUrE%3D"
    be = open_raw("azure://cairn-errors", BackendOptions(env={
        "AZURE_ACCOUNT_NAME": DEV_ACCOUNT, "AZURE_SHARED_ACCESS_SIGNATURE": sas}))
    url_with_sig = f"http://127.0.0.1:1/{DEV_ACCOUNT}/cairn-errors?restype=container&{sas}"
    cases = [
        (ServiceRequestError(f"Connection refused: {url_with_sig}"), 50, True),
        (ServiceResponseError("Connection reset by peer"), 50, True),
        (HttpResponseError(response=Response(503)), 50, True),
        (HttpResponseError(response=Response(500)), 50, True),
        (HttpResponseError(response=Response(429)), 50, True),
        (HttpResponseError(response=Response(409)), 50, False),
        (HttpResponseError(response=Response(403)), 52, False),
        (ClientAuthenticationError(response=Response(401)), 52, False),
        (ResourceNotFoundError(response=Response(404)), 51, False),
    ]
    for exc, code, transient in cases:
        err = be._error(exc, "op")
        assert (err.exit_code, err.transient) == (code, transient), (exc, err)
        assert "SeCrEtSiGnAtUrE" not in err.message and sas not in err.message, err.message
    be.close()


def test_max_sizes_and_connections_shape_the_uploads(azurite, tmp_path):
    """duplicity's --azure-max-single-put-size/--azure-max-block-size/--azure-max-connections:
    a 3 MiB volume goes up as 512 KiB blocks (the default would be one Put Blob)."""
    src = tmp_path / "src"
    write(str(src / "big.bin"), os.urandom(3 << 20))
    common = ["--no-encryption", "--archive-dir", tmp_path / "c", "--no-adaptive-compression",
              "--compress-level", "0", "--azure-max-single-put-size", str(1 << 20),
              "--azure-max-block-size", str(512 << 10), "--azure-max-connections", "2"]
    cairn("full", *common, src, "azure://cairn-maxsizes/h", env=azurite.cli_env)
    with azurite.service() as svc:
        cc = svc.get_container_client("cairn-maxsizes")
        vol = [n for n in azurite.blobs("cairn-maxsizes") if ".vol1." in n][0]
        committed, _uncommitted = cc.get_blob_client(vol).get_block_list("committed")
    assert len(committed) >= 6 and max(b.size for b in committed) <= 512 << 10
    r = cairn("restore", *common, "azure://cairn-maxsizes/h", tmp_path / "r", env=azurite.cli_env)
    assert r.returncode == 0 and (tmp_path / "r" / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
