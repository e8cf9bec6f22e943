# SPDX-License-Identifier: GPL-3.0-or-later
"""`make bench-remote`: uploads to real sftp and S3 servers on loopback, cairn against duplicity.

1. Full backup of the shared dataset to sshd (sftp://) and to moto's S3 server (s3://), each
   tool with its own backend (duplicity: paramiko, boto3), same settings (symmetric gpg, default
   volume size). Prints seconds, stored MB, effective upload MB/s and cairn/duplicity ratios.
2. --max-upload-rate: the transfer layer pushing 64 MiB through four concurrent uploads at a
   limit, and a whole cairn backup with the limit; prints the measured rate against the limit.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "plugins", "module_utils"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "backends"))

from servers import S3_ENV, MotoS3, Sshd  # noqa: E402

from cairn.backends import BackendOptions, open_backend  # noqa: E402
from cairn.backends.transfer import UploadQueue  # noqa: E402

DATASET = os.environ.get("CAIRN_DATASET_SCRIPT",
                         os.path.join(os.path.dirname(ROOT), "shared", "bench", "make-dataset.sh"))
PASSPHRASE = "bench passphrase, not a secret"
MiB = 1 << 20


def run(cmd, env):
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr.decode(errors='replace')[-3000:]}")
    return elapsed


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _dirs, fs in os.walk(path) for f in fs)


def s3_bytes(s3, bucket, prefix):
    total = 0
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        total += sum(o["Size"] for o in page.get("Contents", []))
    return total


def rate_check(url, options, limit, work):
    """Measured bytes/s of 8 x 8 MiB through the transfer layer at ``limit``, 4 uploads at once."""
    files = []
    for i in range(8):
        p = os.path.join(work, f"rate{i}")
        with open(p, "wb") as f:
            f.write(os.urandom(8 * MiB))
        files.append(p)
    be = open_backend(url, BackendOptions(max_upload_rate=limit, **options))
    q = UploadQueue(be, 4)
    t = time.perf_counter()
    for i, p in enumerate(files):
        q.submit(p, f"rate-{i}.bin")
    q.drain()
    elapsed = time.perf_counter() - t
    q.close()
    be.delete([f"rate-{i}.bin" for i in range(len(files))])
    be.close()
    return 64 * MiB / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(ROOT, "bench", "out-remote"))
    ap.add_argument("--duplicity", default=os.environ.get("CAIRN_DUPLICITY",
                                                          os.path.join(ROOT, ".venv-duplicity", "bin", "duplicity")))
    ap.add_argument("--cairn", default=os.path.join(ROOT, ".venv", "bin", "cairn"))
    ap.add_argument("--rate", type=int, default=8 * MiB, help="bytes/s for the rate-limit check")
    args = ap.parse_args()
    if not os.path.exists(DATASET):
        sys.exit(f"dataset script not found: {DATASET} (set CAIRN_DATASET_SCRIPT)")
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data = os.path.join(work, "data")
    print("building the dataset ...", flush=True)
    subprocess.run(["bash", DATASET, data], check=True)
    sshd = Sshd(os.path.join(work, "sshd")).start()
    s3 = MotoS3(work).start()
    try:
        env = dict(os.environ, PASSPHRASE=PASSPHRASE, GNUPGHOME=os.path.join(work, "gnupg"), **S3_ENV)
        os.makedirs(env["GNUPGHOME"], mode=0o700)
        s3.client().create_bucket(Bucket="cairn-bench")
        tools = {"duplicity": [args.duplicity], "cairn": [args.cairn, "--no-progress"]}
        targets = {
            "sftp": (lambda tool: sshd.url(os.path.join(work, "remote", tool)),
                     ["--ssh-options=" + sshd.ssh_options],
                     lambda tool: du(os.path.join(work, "remote", tool))),
            "s3": (lambda tool: f"s3://cairn-bench/{tool}", ["--s3-endpoint-url", s3.endpoint],
                   lambda tool: s3_bytes(s3, "cairn-bench", tool + "/")),
        }
        subprocess.run(["tar", "cf", "/dev/null", data], check=False)      # warm the page cache
        results = {}
        for kind, (url, opts, stored) in targets.items():
            print(f"full backup to {kind}", flush=True)
            for tool in ("duplicity", "cairn"):
                os.sync()
                time.sleep(1)
                cache = ["--archive-dir", os.path.join(work, "cache", kind, tool), "--name", "bench"]
                secs = run([*tools[tool], "full", *cache, *opts, data, url(tool)], env)
                results[(kind, tool)] = (secs, stored(tool))
                print(f"  {tool:10s} {secs:7.2f} s  {stored(tool) / 1e6:8.1f} MB", flush=True)
        print("rate limit", flush=True)
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            layer = rate_check(sshd.url(os.path.join(work, "remote", "rate")), {"ssh_options": sshd.ssh_options},
                               args.rate, tmp)
        limited_url = sshd.url(os.path.join(work, "remote", "limited"))
        sub = os.path.join(data, "bin", "archive.bin")
        src = os.path.join(work, "limited-src")
        os.makedirs(src)
        with open(sub, "rb") as fi, open(os.path.join(src, "part.bin"), "wb") as fo:
            fo.write(fi.read(48 * MiB))
        secs = run([args.cairn, "--no-progress", "full", "--archive-dir", os.path.join(work, "cache", "limited"),
                    "--ssh-options=" + sshd.ssh_options, "--max-upload-rate", str(args.rate), src, limited_url], env)
        whole = du(os.path.join(work, "remote", "limited")) / secs
    finally:
        s3.stop()
        sshd.stop()

    print()
    print(f"{'':30s}{'duplicity':>12s}{'cairn':>12s}{'cairn/dup':>12s}")
    for kind in targets:
        (ds, db), (cs, cb) = results[(kind, "duplicity")], results[(kind, "cairn")]
        print(f"{'full to ' + kind + ' (s)':30s}{ds:12.2f}{cs:12.2f}{cs / ds:12.2f}")
        print(f"{'  stored (MB)':30s}{db / 1e6:12.1f}{cb / 1e6:12.1f}{cb / db:12.3f}")
        print(f"{'  stored MB per wall s':30s}{db / ds / 1e6:12.1f}{cb / cs / 1e6:12.1f}"
              f"{(cb / cs) / (db / ds):12.2f}")
    print()
    limit = args.rate
    print(f"--max-upload-rate {limit / MiB:.1f} MiB/s")
    print(f"  transfer layer, 4 concurrent uploads of 64 MiB: {layer / MiB:6.2f} MiB/s = "
          f"{layer / limit:.3f} x the limit")
    print(f"  whole backup of 48 MiB (incl. gpg, setup):       {whole / MiB:6.2f} MiB/s = "
          f"{whole / limit:.3f} x the limit")
    ok = abs(layer / limit - 1) <= 0.10
    print(f"  within 10 %: {'yes' if ok else 'NO'}")
    shutil.rmtree(work, ignore_errors=True)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
