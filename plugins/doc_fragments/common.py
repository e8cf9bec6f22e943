# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: cairn.backup contributors
from __future__ import annotations


class ModuleDocFragment(object):
    # Options shared by every module that talks to an archive (target, encryption, cache).
    DOCUMENTATION = r'''
options:
  target:
    description:
      - URL of the archive, as duplicity takes it, for example V(file:///srv/backup/web1).
    type: str
    required: true
  passphrase:
    description:
      - Symmetric passphrase (as duplicity's E(PASSPHRASE)), or the passphrase of the secret key
        when reading a public-key archive.
      - It reaches gpg on a file descriptor, never on a command line, and is never returned or logged.
      - Mutually exclusive with O(passphrase_file).
    type: str
  passphrase_file:
    description:
      - A file on the managed host whose first line is the passphrase.
    type: path
  encrypt_keys:
    description:
      - Public-key encryption to these key ids or fingerprints (duplicity's C(--encrypt-key)).
      - When empty and O(no_encryption=false), symmetric encryption with O(passphrase) is used.
    type: list
    elements: str
    default: []
  hidden_encrypt_keys:
    description:
      - Public-key encryption to these keys without naming them in the files (duplicity's
        C(--hidden-encrypt-key)).
    type: list
    elements: str
    default: []
  sign_key:
    description:
      - Sign what is written with this key; when reading, require signatures by it.
    type: str
  sign_passphrase:
    description:
      - Passphrase of O(sign_key)'s secret key (duplicity's E(SIGN_PASSPHRASE)); default O(passphrase).
    type: str
  gpg_options:
    description:
      - Extra gpg options, applied last (duplicity's C(--gpg-options)), for example C(--cipher-algo AES256).
    type: str
  gpg_binary:
    description:
      - The gpg program (duplicity's C(--gpg-binary)).
    type: str
    default: gpg
  openpgp_engine:
    description:
      - Who writes and reads symmetric (passphrase-only) volumes, manifests and signatures.
      - C(builtin) does it in the engine's own process (no gpg process, no pipes, one key
        derivation per run); the messages are ordinary OpenPGP that gpg and duplicity read.
        It also writes and reads messages to public keys (O(encrypt_keys)); gpg then makes one
        session key and its key packets per run, and decrypts only session keys when reading
        (secret keys stay in gpg-agent), and the engine does the rest.
        Signed messages, and any run with O(gpg_options) or another O(gpg_binary), always go
        through gpg.
      - C(gpg) sends every message through gpg, as duplicity does.
    type: str
    choices: [builtin, gpg]
    default: builtin
  use_gpgsm:
    description:
      - Encrypt with gpgsm (CMS, S/MIME) instead of gpg, to the X.509 certificates named in
        O(encrypt_keys) (fingerprint, keygrip or subject, as C(gpgsm -r) takes them); files end in
        C(.p7m) (duplicity's C(--use-gpgsm)). Runs C(gpgsm), or O(gpg_binary) when it is not C(gpg).
        Needs gpgsm 2.2.27 or later, and the certificates
        imported into O(gnupg_home) with their root marked trusted there (C(trustlist.txt)).
      - Reading (restore, verify, list) decrypts C(.p7m) files with gpgsm, using the certificate's
        secret key in O(gnupg_home)'s gpg-agent; O(passphrase), when set, unlocks it.
      - Writing needs O(encrypt_keys); O(no_encryption), O(hidden_encrypt_keys) and O(sign_key)
        cannot be combined with it (gpgsm has no symmetric encryption, hidden recipients or
        sign-and-encrypt). An archive of C(.p7m) files read without it fails, naming the option.
    type: bool
    default: false
  no_encryption:
    description:
      - Write gzip instead of gpg (duplicity's C(--no-encryption)).
    type: bool
    default: false
  gnupg_home:
    description:
      - The GnuPG home directory to use; default E(GNUPGHOME) or gpg's default.
    type: path
  archive_dir:
    description:
      - The local cache of manifests and signatures (duplicity's C(--archive-dir)).
      - Default C(~/.cache/duplicity) of the user running the module.
    type: path
  name:
    description:
      - Name of this archive's cache inside O(archive_dir) (duplicity's C(--name)); default the MD5 of O(target).
    type: str
  tempdir:
    description:
      - Where volumes are built and decrypted; needs about two volumes per CPU of free space.
    type: path
  file_prefix:
    description:
      - A prefix of every file name at the target (duplicity's C(--file-prefix)), so that several
        archives can share one directory or bucket.
    type: str
    default: ''
  file_prefix_archive:
    description:
      - A prefix of the names of volumes, after O(file_prefix) (duplicity's C(--file-prefix-archive));
        volumes are written and looked for under C(<file_prefix><file_prefix_archive>duplicity-...).
      - Set it, and O(file_prefix_manifest) and O(file_prefix_signature), as the duplicity that
        wrote the archive had them, or its files are not found.
    type: str
    default: ''
  file_prefix_manifest:
    description:
      - A prefix of the names of manifests, after O(file_prefix) (duplicity's C(--file-prefix-manifest)),
        at the target and in the local cache.
    type: str
    default: ''
  file_prefix_signature:
    description:
      - A prefix of the names of signature files, after O(file_prefix) (duplicity's
        C(--file-prefix-signature)), at the target and in the local cache.
    type: str
    default: ''
  break_lock:
    description:
      - Take over the lock on the target of another run even when it looks live (a warning names
        it). Only when that run is known to be gone; see the CLI's C(--break-lock).
    type: bool
    default: false
  lock_stale_after:
    description:
      - Take over another run's lock on the target when it was not refreshed for this long, in
        seconds or as an interval such as V(30m) or V(2h) (default 30 minutes).
    type: str
  mirror_targets:
    description:
      - More target URLs that receive every file too, for redundancy. Reads use the first
        target that has a file.
      - A mirror that fails (down, full, refusing credentials) does not fail a backup; it is
        marked lagging for the rest of the run, the backup completes on the other targets, the
        C(backup) module warns naming it (its result's C(lagging_targets)), and the next backup first copies
        to it the sets it lacks. O(target) failing still fails the run, unless O(mirror_stand_in).
    type: list
    elements: str
    default: []
  mirror_stand_in:
    description:
      - When O(target) fails during a backup, the first healthy mirror of O(mirror_targets)
        takes its place for the rest of the run (O(target) is then reported lagging) instead of
        failing the run.
    type: bool
    default: false
  num_retries:
    description:
      - How often a failed transfer is retried, with exponential backoff (duplicity's C(--num-retries)).
      - Only transient failures (a dropped connection, a timeout, a server error) are retried.
    type: int
    default: 5
  timeout:
    description:
      - Seconds a network operation may stall before it fails (duplicity's C(--timeout)).
    type: int
    default: 30
  max_upload_rate:
    description:
      - Limit all uploads of the run together to this many bytes per second.
    type: int
  upload_concurrency:
    description:
      - How many volumes upload at once while the next ones are built.
    type: int
    default: 4
  ssh_options:
    description:
      - For C(sftp://) targets, ssh options as duplicity's C(--ssh-options), for example
        C(-oIdentityFile=/root/.ssh/backup -oUserKnownHostsFile=/etc/cairn/known_hosts -oPort=2222).
    type: str
    default: ''
  ssh_accept_new_host_key:
    description:
      - Trust and record an sftp host key that is not in known_hosts yet. A changed key is always refused.
    type: bool
    default: false
  s3_endpoint_url:
    description:
      - Endpoint of an S3-compatible store (MinIO, Ceph, Wasabi, Backblaze B2, Google Cloud Storage).
    type: str
  s3_region_name:
    description:
      - S3 region (for C(b2://), the B2 region, used to build the endpoint; without it, B2 is asked for the endpoint).
    type: str
  s3_storage_class:
    description:
      - Storage class of uploaded objects, for example C(STANDARD_IA), C(ONEZONE_IA), C(GLACIER_IR).
    type: str
  s3_server_side_encryption:
    description:
      - Ask S3 to encrypt objects at rest as well (C(AES256) or C(aws:kms)).
    type: str
    choices: [AES256, 'aws:kms']
  s3_kms_key_id:
    description:
      - KMS key for O(s3_server_side_encryption=aws:kms).
    type: str
  s3_kms_grant:
    description:
      - Grantee given full control of each uploaded object (duplicity's C(--s3-kms-grant)).
    type: str
  s3_unencrypted_connection:
    description:
      - Plain HTTP to the S3 endpoint (duplicity's C(--s3-unencrypted-connection)).
    type: bool
    default: false
  s3_multipart_chunk_size:
    description:
      - Size in MiB of the parts of a multipart upload.
    type: int
    default: 20
  s3_multipart_max_procs:
    description:
      - Parts of one volume uploading at once.
    type: int
    default: 4
  s3_object_lock_mode:
    description:
      - S3 Object Lock retention mode of every archive object written (volumes, manifests,
        signatures; not cairn's own lock objects). Needs O(s3_object_lock_days) too, and a bucket
        with Object Lock enabled (a bucket cairn creates gets it).
      - Objects under retention are never deleted by prune or cleanup; they are reported as skipped.
      - See the collection's C(docs/immutable-backups.md).
    type: str
    choices: [governance, compliance]
  s3_object_lock_days:
    description:
      - Days of S3 Object Lock retention from the upload of each object; with O(s3_object_lock_mode).
    type: int
  azure_blob_tier:
    description:
      - Access tier of uploaded blobs on C(azure://) targets.
    type: str
    choices: [Hot, Cool, Cold, Archive]
  validate_certs:
    description:
      - Check TLS certificates of C(webdavs://) and C(ftps://) servers (C(false) is duplicity's
        C(--ssl-no-check-certificate)).
    type: bool
    default: true
  ca_cert_file:
    description:
      - CA bundle for C(webdavs://) and C(ftps://) servers (duplicity's C(--ssl-cacert-file)).
    type: path
  ftp_passive:
    description:
      - Passive FTP (duplicity's C(--ftp-passive)); V(false) is C(--ftp-regular).
    type: bool
    default: true
  target_password:
    description:
      - Password for C(sftp://), C(ftp://), C(ftps://), C(webdav://) targets (duplicity's E(FTP_PASSWORD)).
    type: str
  aws_access_key_id:
    description:
      - S3 access key id (E(AWS_ACCESS_KEY_ID)); without it boto3's usual credential chain applies.
    type: str
  aws_secret_access_key:
    description:
      - S3 secret key (E(AWS_SECRET_ACCESS_KEY)).
    type: str
  aws_session_token:
    description:
      - S3 session token (E(AWS_SESSION_TOKEN)).
    type: str
  azure_connection_string:
    description:
      - Azure Storage connection string (E(AZURE_CONNECTION_STRING)).
    type: str
  azure_account_name:
    description:
      - Azure Storage account name (E(AZURE_ACCOUNT_NAME)).
    type: str
  azure_account_key:
    description:
      - Azure Storage account key (E(AZURE_ACCOUNT_KEY)).
    type: str
  azure_sas_token:
    description:
      - Azure shared access signature (E(AZURE_SHARED_ACCESS_SIGNATURE)).
    type: str
  backend_env:
    description:
      - Further environment variables for the backends, by duplicity's names, for example
        C(GS_ACCESS_KEY_ID), C(GOOGLE_APPLICATION_CREDENTIALS), C(B2_APPLICATION_KEY), C(DPBX_ACCESS_TOKEN),
        C(AWS_PROFILE). Values are treated as secrets.
    type: dict
    default: {}
requirements:
  - python-gnupg and cffi on the managed host, and the gpg and librsync (C(librsync.so.2)) system packages
    (role M(cairn.backup.agent) installs them).
'''

    # Selection options of the modules that walk a source tree (backup, and verify's compare).
    SELECTION = r'''
options:
  selection:
    description:
      - Ordered selection lines, as a duply exclude file or duplicity's filelists take them.
        V(+ GLOB) includes, V(- GLOB) excludes; the first line that matches a path decides.
      - Tried before O(includes) and O(excludes).
    type: list
    elements: str
    default: []
  includes:
    description: Include globs, with duplicity's semantics (tried in order, before O(excludes)).
    type: list
    elements: str
    default: []
  excludes:
    description: Exclude globs, with duplicity's semantics.
    type: list
    elements: str
    default: []
  include_regexps:
    description: Include regular expressions (duplicity's C(--include-regexp)), tried after the globs.
    type: list
    elements: str
    default: []
  exclude_regexps:
    description: Exclude regular expressions (duplicity's C(--exclude-regexp)).
    type: list
    elements: str
    default: []
  include_filelist:
    description: A file of C(+ )/C(- ) prefixed globs, including by default (duplicity's C(--include-filelist)).
    type: path
  exclude_filelist:
    description: A file of C(+ )/C(- ) prefixed globs, excluding by default (duplicity's C(--exclude-filelist)).
    type: path
  exclude_if_present:
    description: Leave out directories that hold a file of one of these names (duplicity's C(--exclude-if-present)).
    type: list
    elements: str
    default: []
  exclude_older_than:
    description: Leave out files modified before this time (a duplicity time string).
    type: str
  exclude_device_files:
    description: Leave out character and block devices.
    type: bool
    default: false
  exclude_other_filesystems:
    description: Stay on the file system of the source directory.
    type: bool
    default: false
'''

    ATTRIBUTES = r'''
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
'''
