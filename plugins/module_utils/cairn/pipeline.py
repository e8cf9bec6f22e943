# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup run: plan (full or incremental), write the volumes, write the manifest, commit.

Write order (what makes an interrupted run harmless): every volume is uploaded, when complete,
under its unfinished name (naming.UNFINISHED_MARK), which neither duplicity nor cairn reads as
part of a set. The commit then writes the manifest, renames the volumes to their final names, and
writes the signatures. Interrupted before the manifest, the archive is to duplicity exactly its
last complete backup. Interrupted inside the commit, duplicity sees a set with a manifest and
missing volumes, which it reports and passes over (``restore -t`` of an earlier time works), and
cairn an incomplete set, which its next run resumes or removes. Volumes under final names
with no manifest, which make duplicity abort ("No remote manifest name"), never occur.

One ``BackupRun`` per run owns every thread it uses; its steps are plan, write_volumes,
write_manifest and commit. Writing the volumes is three stages with bounded hand-offs:

    build     the caller's thread: the walk merged with the old signatures, librsync, difftar
              entries cut into volumes (big files' signatures on a thread beside it)
       -> a volume at its first MiB; at most ``jobs`` volumes in the next stage
    encrypt   ``jobs`` workers: gpg reads a volume while it grows, then it is hashed
       -> at most ``upload_concurrency`` files in the next stage
    upload    UploadQueue

A side pool checks the remote manifest beside the walk and encrypts and gzips the signatures
beside the last volumes. The first failure anywhere fails the run's Abort: every blocked
hand-off wakes and raises, the volumes' readers end so gpg ends, queued uploads are dropped;
the run joins every thread, removes its temp dir and raises that first failure. Nothing of a
failed run is at the target under a final name but volumes that were complete.
"""
import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time as _time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from . import archive, naming, timespec
from .backends import redact_url
from .backends.base import TEMP_PREFIX
from .backends.transfer import UploadQueue
from .backup import DiffWriter, SigWriter, Stats, VolumeResult, VolumeWriter, merge_with_previous, merged_signatures
from .cache import local_manifest_name
from .crypto import write_gzip
from .errors import (BackendError, CairnError, ExitCode, ManifestMismatch, NoSecretKey, NoSignatures,
                     ResumeMismatch, SourceError, UserError)
from .localdirs import remove_file
from .manifest import Manifest
from .selection import Selection
from .session import Session
from .stages import Abort, Aborted, Stage
from . import resume

log = logging.getLogger("cairn")

MiB = 1 << 20


def _now_after(t):
    """A set time strictly after ``t`` (names have second resolution)."""
    now = int(_time.time())
    while t is not None and now <= t:
        _time.sleep(t + 1 - _time.time() + 0.01)
        now = int(_time.time())
    return now


def _unused_time(col, after, prefix, at=None):
    """A set time after ``after`` that no set at the target has, not even an incomplete one or one
    whose first upload is still under its temp name: that may be the in-flight set of a writer
    whose lock this run took over, and its files are never to be overwritten. ``at``
    (--current-time): that time, or a UserError when it is not such a time."""
    taken = {s.end_time for s in col.sets}
    in_flight = [name[len(TEMP_PREFIX):] for name in col.foreign if name.startswith(TEMP_PREFIX)]
    for name in in_flight + list(col.unfinished):
        p = naming.parse(naming.finished_name(name, prefix) or name, prefix)
        if p is not None:
            taken.add(p.time if p.time is not None else p.end_time)
    if at is not None:
        if after is not None and at <= after:
            raise UserError(f"--current-time {at} ({timespec.to_iso(at)}) is not after the last backup "
                            f"({timespec.to_iso(after)}): a set must be newer than the one before it")
        if at in taken:
            raise UserError(f"--current-time {at} ({timespec.to_iso(at)}) is the time of a set already "
                            "at the target (perhaps an unfinished one)")
        return at
    now = _now_after(after)
    while now in taken:
        now = _now_after(now)
    return now


def _localdir(source):
    parts = os.fsencode(source).split(b"/")
    out = b"/".join(p for i, p in enumerate(parts) if p != b"." or i == 0)
    return out.rstrip(b"/") or b"/"


# --- backup ---------------------------------------------------------------------------------

def plan_backup(target, opts, session=None):
    """Decide full or incremental, and why (used by backup and by check mode)."""
    def decide(sess):
        col = sess.collection()
        chain = col.last_chain
        sig_chain = col.signature_chain
        usable = sig_chain is not None and sig_chain is chain
        if opts.mode == "full":
            return "full", "full backup requested", col
        if opts.mode == "incremental" and not usable:
            raise NoSignatures("no usable signature chain at the target for an incremental "
                               "backup; run a full backup first")
        if chain is None:
            return "full", "no previous backup at the target", col
        if not usable:
            return "full", "the last chain has no complete signatures", col
        # as duplicity's, these turn a requested incremental into a full too
        if opts.full_if_older_than is not None and chain.start_time < opts.full_if_older_than:
            return "full", (f"last full backup ({timespec.to_iso(chain.start_time)}) is older than "
                            f"{timespec.to_iso(opts.full_if_older_than)}"), col
        incs = len(chain.sets) - 1
        if opts.full_if_n_inc is not None and incs >= opts.full_if_n_inc:
            return "full", f"the last chain has {incs} incremental(s), full_if_n_inc is {opts.full_if_n_inc}", col
        if opts.mode == "incremental":
            return "incremental", "incremental backup requested", col
        return "incremental", f"extends the chain started {timespec.to_iso(chain.start_time)}", col
    if session is not None:
        return decide(session)
    with Session(target, lock=False) as sess:
        return decide(sess)


def plan_changes(target, opts):
    """What a backup would do, from metadata alone: type, reason and change counts (check mode)."""
    _require_source(opts.source)
    with Session(target, lock=False) as sess:
        kind, reason, col = plan_backup(target, opts, sess)
        old = []
        if kind == "incremental":
            old = sess.signature_paths(col.signature_chain.sets)
        counts = {"new_files": 0, "changed_files": 0, "deleted_files": 0, "unchanged_files": 0,
                  "source_files": 0, "source_bytes": 0}
        walk = selection(opts, on_warning=lambda m: None).walk()
        owner_names = archive.OwnerNames()
        for e, prev in merge_with_previous(walk, merged_signatures(old)):
            if e is None:
                counts["deleted_files"] += 1
                continue
            info = archive.path_info(e.index, e.path, e.stat, owner_names)
            if info is None:
                continue
            counts["source_files"] += 1
            counts["source_bytes"] += info.size
            if prev is None:
                counts["new_files"] += 1
            elif info.same_as(prev.info):
                counts["unchanged_files"] += 1
            else:
                counts["changed_files"] += 1
        last = col.last_backup_time()
        return dict(type=kind, reason=reason, last_backup=timespec.to_iso(last) if last else None,
                    last_backup_age=int(_time.time()) - last if last else None, **counts)


def selection(opts, on_warning):
    """The backup's Selection: its rules and duplicity's --files-from, --copy-links."""
    return Selection(opts.source, opts.rules, on_warning=on_warning, null_separator=opts.null_separator,
                     files_from=opts.files_from, copy_links=opts.copy_links)


def _require_source(source):
    if not os.path.isdir(source):
        raise SourceError(f"source directory {source} does not exist or is not a directory")


def backup(target, opts, progress=None, on_file=None):
    """One backup run of ``opts.source`` to ``target``; returns its result (see BackupRun.result).
    ``on_file``: see DiffWriter."""
    from .replicate import with_mirrors    # mirrors: catch-up first, lagging ones named after
    _require_source(opts.source)
    started = _time.time()
    if opts.dry_run:
        return _without_writing(replace(target, read_only=True), opts, started, "dry run: nothing written")
    if opts.skip_if_no_change:
        plan = plan_changes(target, opts)
        if plan["type"] == "incremental" and not (plan["new_files"] or plan["changed_files"]
                                                  or plan["deleted_files"]):
            # duplicity's words (log parsers look for them), typo included
            log.warning("Skipped volume upload, as effectivly nothing has changed")
            return _without_writing(target, opts, started, "no change since the last backup: nothing stored",
                                    plan=plan, skipped=True)
    try:
        with Session(target) as sess:
            result = with_mirrors(sess, lambda: BackupRun(sess, opts, progress, on_file=on_file).run())
    except ResumeMismatch as e:
        # found only while continuing (the file the last volume stopped in has changed): the
        # set is started again, new
        log.warning("cannot resume the interrupted backup set: %s; starting a new set", e)
        with Session(target) as sess:
            result = with_mirrors(sess, lambda: BackupRun(sess, opts, progress, may_resume=False,
                                                          on_file=on_file).run())
    result["duration"] = round(_time.time() - started, 3)
    return result


def _without_writing(target, opts, started, why, plan=None, skipped=False):
    """The result of a dry run, or of an incremental skipped as unchanged: what the backup
    would have found (counted from metadata, as check mode does), nothing stored."""
    plan = plan or plan_changes(target, opts)
    return {"type": plan["type"], "reason": f"{plan['reason']}; {why}", "time": None, "timestamp": started,
            "start_time": None, "volumes": 0, "resumed_at_volume": None, "volume_bytes_uploaded": 0,
            "bytes_stored": 0, "source_files": plan["source_files"], "source_bytes": plan["source_bytes"],
            "new_files": plan["new_files"], "changed_files": plan["changed_files"],
            "deleted_files": plan["deleted_files"], "unchanged_files": plan["unchanged_files"],
            "delta_entries": plan["new_files"] + plan["changed_files"] + plan["deleted_files"],
            "raw_delta_bytes": 0, "errors": 0, "warnings": [], "dry_run": bool(opts.dry_run),
            "skipped": skipped, "duration": round(_time.time() - started, 3), "exit_code": 0}


class BackupRun:
    """One backup run on an open Session: ``run()`` takes its named steps in order, plan,
    write_volumes, write_manifest, commit, and returns the result; on any failure it stops
    everything and raises the first one (see the module docstring)."""

    def __init__(self, sess, opts, progress=None, may_resume=True, on_file=None):
        self.sess = sess
        self.on_file = on_file
        self.may_resume = may_resume
        self.resumption = None          # resume.Resumption: the interrupted set this run continues
        self.record = None              # resume.Record: this set's checkpoints
        self.cuts = {}                  # volume number -> DiffWriter.checkpoint() where it ended
        self.ready = set()              # volume numbers encrypted and hashed
        self.checkpoint_lock = threading.Lock()
        self.segments = None            # one thread: the checkpoints' segments to the target, in order
        self.last_segment = -1          # the checkpoint the last segment ended at
        self.segment_time = float("-inf")   # the first checkpoint goes to the target at once
        self.kept = []                  # resume.Checkpoints of the volumes a resumed run keeps
        self.resumed_at = None          # the first volume this run writes, when it resumes
        self.target = sess.opts
        self.opts = opts
        self.progress = progress
        self.started = _time.time()
        self.abort = Abort()
        self.stats = Stats()
        self.warnings = []
        self.tmp = None                 # the run's own temp dir, inside the session's
        self.files = contextlib.ExitStack()     # local files this thread writes
        self.side = None                # the side pool: remote manifest check, signatures
        self.sig_thread = None          # big files' signatures, beside the delta
        self.encrypt = None             # the encrypt stage (Stage)
        self.uploads = None             # the upload stage (UploadQueue)
        self.volumes = None             # the VolumeWriter
        self.sig_writer = None
        self.precheck = None
        self.sig_encrypted = self.sig_gzipped = None

    def run(self):
        try:
            self.plan()
            self.write_volumes()
            self.write_manifest()
            self.commit()
        except BaseException as e:   # noqa: BLE001 - whichever came first is raised below
            self.abort.fail(e)
        finally:
            self._stop()
        if self.abort.failed:
            raise self.abort.error
        return self.result()

    # --- the steps -----------------------------------------------------------------------

    def plan(self):
        """Lock the target, decide full or incremental, name the set, start the checks."""
        sess, opts, target = self.sess, self.opts, self.target
        sess.lock_target("backup")
        self.kind, self.reason, col = plan_backup(target, opts, sess)
        self.tmp = tempfile.mkdtemp(prefix="backup-", dir=sess.tmpdir)
        self.side = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cairn-side")
        self.hostname = socket.gethostname()
        self.localdir = _localdir(opts.source)
        self.old_sig_paths = []
        chain_end = None
        self.chain_before = None        # (start time, sets) of the chain an incremental extends
        if self.kind == "incremental":
            chain = col.signature_chain
            self.chain_before = (chain.start_time, len(chain.sets))
            last = sess.manifest(chain.sets[-1])
            if not opts.allow_source_mismatch:
                _check_source(last, self.hostname, self.localdir)
            # runs beside the scan; nothing is uploaded or deleted before it has passed
            self.precheck = self._side_job(_check_remote_manifest, sess, chain.sets[-1], self.tmp)
            self.old_sig_paths = sess.signature_paths(chain.sets)
            chain_end = chain.end_time
        self.store = resume.LocalStore(sess.cache.path)
        self.listing = set(col.names)
        self.fingerprint = resume.fingerprint(target, opts, self.hostname, self.localdir, self.kind)
        if self.may_resume:
            self.resumption = resume.find(sess, col, self.store, self.tmp, kind=self.kind,
                                          fingerprint_now=self.fingerprint, chain_end=chain_end,
                                          last_time=col.last_backup_time())
        if self.resumption is not None:
            self.record = self.resumption.record
            self.kept = list(self.record.checkpoints)     # the record grows from here on
            self.resumed_at = self.resumption.first_new_volume
            self.names = dict(self.record.names)
            self.time = self.names.get("time", self.names.get("end_time"))
        else:
            self.store.clear()
            if self.kind == "incremental":
                self.time = _unused_time(col, chain_end, target.names, opts.current_time)
                self.names = dict(start_time=chain_end, end_time=self.time)
            else:
                self.time = _unused_time(col, col.last_backup_time(), target.names, opts.current_time)
                self.names = dict(time=self.time)
            self.record = resume.Record(dict(self.names), self.kind, self.fingerprint)
        log.info("%s backup of %s to %s: %s", self.kind, opts.source, redact_url(target.url), self.reason)
        if self.resumption is not None:
            log.info("resumed at volume %d", self.resumed_at)
        keep = (self.resumption.kept_names(target.names, sess.crypto.suffix)
                if self.resumption is not None else set())
        self.gate = _Gate(lambda: (self.abort.result(self.precheck) if self.precheck else None,
                                   self._unrename_kept(), _remove_interrupted(sess, col, keep)))

    def write_volumes(self):
        """diff -> build volumes -> compress/encrypt -> upload, until every volume is encrypted
        and queued for upload; the signatures are encrypted beside the last volumes."""
        sess, opts = self.sess, self.opts
        jobs = opts.jobs or os.cpu_count() or 1
        self.uploads = UploadQueue(sess.backend, self.target.backend.upload_concurrency, abort=self.abort,
                                   before_put=self._before_upload)
        self.encrypt = Stage("vol", self._encrypt_volume, workers=jobs, abort=self.abort)
        res = self.resumption
        self.volumes = VolumeWriter(self.encrypt.put, self._volume_name, opts.volsize * MiB, self.tmp,
                                    check=self.abort.check, on_cut=self._volume_cut,
                                    first_number=res.first_new_volume if res else 1)
        # gpg reading a volume gets an error at its next read, and ends
        self.abort.on_abort(lambda: self.volumes.fail(Aborted()))
        self.sig_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-sig")
        self.segments = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-resume")
        if res is not None:
            # the target's copy of the record covers every kept volume too: one segment from the
            # last one an earlier run stored there
            stored = [i for i, cp in enumerate(self.kept) if resume.segment_name(
                res.record, cp.number, self.target.names, sess.crypto.suffix) in self.listing]
            self.last_segment = stored[-1] if stored else -1
            if self.last_segment < len(self.kept) - 1:
                self._store_segment(len(self.kept) - 1)
        # the signatures and the manifest's file list grow in the archive dir, where a resumed run
        # finds them (the record says how much of them its kept volumes account for)
        self.store.ensure()
        sig_plain = self.store.path(resume.SIGNATURES)
        self.filelist_path = self.store.path(resume.FILELIST)
        if res is not None:
            self.sig_writer = SigWriter(sig_plain, keep=res.last.sig_bytes)
            filelist = self.files.enter_context(open(self.filelist_path, "r+b"))
            filelist.truncate(res.last.filelist_bytes)
            filelist.seek(res.last.filelist_bytes)
            self.stats = Stats(**res.last.stats)
        else:
            self.sig_writer = SigWriter(sig_plain)
            filelist = self.files.enter_context(open(self.filelist_path, "wb"))
        self.files.callback(self.sig_writer.close, complete=False)
        walk = selection(opts, on_warning=self._warn).walk()
        self.diff = DiffWriter(self.volumes, self.sig_writer, filelist, self.stats,
                               incremental=(self.kind == "incremental"), max_blocksize=opts.max_blocksize,
                               adaptive=opts.adaptive_compression, on_warning=self._warn, progress=self.progress,
                               sig_executor=self.sig_thread, check=self.abort.check,
                               resume_at=res.resume_at if res else None, on_file=self.on_file)
        self.diff.write(merge_with_previous(walk, merged_signatures(self.old_sig_paths)))
        filelist.close()
        self.sig_writer.close()
        self.sig_out = os.path.join(self.tmp, "signatures.tar.out")
        self.sig_gz = os.path.join(self.tmp, "signatures.tar.gz")
        self.sig_encrypted = self._side_job(sess.crypto.encrypt_file, sig_plain, self.sig_out)
        self.sig_gzipped = self._side_job(write_gzip, sig_plain, self.sig_gz)
        self.volumes.close(none_before=res is None)
        self.encrypt.join()
        self.abort.check()
        self.new_results = [v.result for v in self.volumes.volumes]
        kept = [VolumeResult(cp.number, naming.unfinished_name(cp.name, self.target.names), cp.sha1, cp.size)
                for cp in self.kept]
        self.results = kept + self.new_results

    def write_manifest(self):
        """The manifest (volumes with their hashes, then the Filelist), encrypted while the last
        uploads run."""
        man = Manifest(hostname=self.hostname, localdir=self.localdir)
        for cp in self.kept:
            man.add_volume(cp.info)
        for vol in self.volumes.volumes:
            man.add_volume(vol.info)
        self.man_plain = os.path.join(self.tmp, "manifest")
        with open(self.man_plain, "wb") as f:
            f.write(man.to_bytes())
            if not self.opts.files_changed:     # --no-files-changed: an empty list, as duplicity's
                f.write(b"Filelist 0\n")
            else:
                f.write(b"Filelist %d\n" % _count_lines(self.filelist_path))
                with open(self.filelist_path, "rb") as fl:
                    shutil.copyfileobj(fl, f)
        self.man_out = self.man_plain + ".out"
        self.sess.crypto.encrypt_file(self.man_plain, self.man_out, gzip_when_plain=False)

    def commit(self):
        """Once every volume is in place and the lock still ours: the manifest, the volumes
        renamed to their final names, the signatures (from then on the set is complete), then
        the local cache (see the module docstring for why in this order)."""
        sess, prefix = self.sess, self.target.names
        self.uploads.drain()
        self.uploads.join()
        self.abort.result(self.sig_encrypted)
        self.abort.result(self.sig_gzipped)
        self.gate()
        _check_uploaded(sess, self.results)     # a set that lost volumes never gets its manifest
        self.abort.check()
        man_suffix = sess.crypto.encrypted_suffix if sess.crypto.encrypted else ""
        sess.backend.put(self.man_out, naming.manifest_name(suffix=man_suffix, prefix=prefix, **self.names))
        for r in self.results:
            sess.backend.rename(r.name, naming.finished_name(r.name, prefix))
        sess.backend.put(self.sig_out, naming.signature_name(suffix=sess.crypto.suffix, prefix=prefix, **self.names))
        # the set is complete: its checkpoints are of no more use
        self.segments.shutdown(wait=True)
        self.abort.check()
        segments = [resume.segment_name(self.record, cp.number, prefix, sess.crypto.suffix)
                    for cp in self.record.checkpoints]
        try:
            if segments:
                sess.backend.delete(segments)
        except BackendError as e:   # the set is committed; the next run or cleanup removes them
            self._warn(f"could not delete the resume records of the set: {e}")
        self.store.clear()
        self.stored = (sum(r.size for r in self.results) + os.path.getsize(self.man_out)
                       + os.path.getsize(self.sig_out))
        new_set = _set_for(self.kind, self.names)
        sess.cache.store_manifest(new_set, self.man_plain)
        sess.cache.store_signature(new_set, self.sig_gz)

    def result(self):
        stats, opts = self.stats, self.opts
        return {
            "type": self.kind,
            "reason": self.reason,
            "time": timespec.to_iso(self.time),
            "timestamp": self.time,
            "start_time": timespec.to_iso(self.names.get("start_time", self.time)),
            "volumes": len(self.results),
            "resumed_at_volume": self.resumed_at,
            "volume_bytes_uploaded": sum(r.size for r in self.new_results),
            "bytes_stored": self.stored,
            "source_files": stats.source_files,
            "source_bytes": stats.source_bytes,
            "new_files": stats.new_files,
            "new_bytes": stats.new_bytes,
            "changed_files": stats.changed_files,
            "changed_bytes": stats.changed_bytes,
            "deleted_files": stats.deleted_files,
            "unchanged_files": stats.unchanged_files,
            "delta_entries": stats.delta_entries,
            "raw_delta_bytes": stats.raw_delta_bytes,
            "errors": stats.errors,
            # the chain this set is in: its full backup's time, and its sets before this one
            "chain_start_timestamp": self.chain_before[0] if self.chain_before else self.time,
            "chain_sets_before": self.chain_before[1] if self.chain_before else 0,
            "warnings": self.warnings,
            "duration": round(_time.time() - self.started, 3),
            # --ignore-errors: files that could not be read are still warned of and listed
            "exit_code": ExitCode.SKIPPED_FILES if (stats.errors or self.warnings) and not opts.ignore_errors else 0,
        }

    # --- the stages' work ----------------------------------------------------------------

    def _encrypt_volume(self, vol):
        """The encrypt stage: encrypt the volume as it grows (hashed as it is written); queue its upload."""
        out = vol.path + ".out"
        # a volume that fails (the run aborts) reads as ended, so gpg ends whatever python-gnupg
        # does with a read error; what it wrote then is not the whole volume, and is dropped
        with vol.data.reader(fail_as_end=True) as reader:
            sha1 = self.sess.crypto.encrypt_file(reader, out, compress=vol.compress,
                                                 compress_level=self.opts.compress_level)
        if not vol.data.complete:
            raise Aborted()
        os.unlink(vol.path)
        size = os.path.getsize(out)
        vol.info.hashes["SHA1"] = sha1
        vol.result = VolumeResult(vol.number, vol.name, sha1, size)
        self._volume_ready(vol)
        self.uploads.submit(out, vol.name, cleanup=lambda: remove_file(out))

    # --- checkpoints: what a resumed run needs ----------------------------------------------
    # A volume's checkpoint is recorded once it is encrypted and hashed, before its upload: a
    # volume can then never be whole at the target without its record (with two uploads at once
    # both may end in the instant before a record is written). A resumed run keeps a recorded
    # volume only when the target holds it whole (resume.kept_volumes); uploads appear under
    # their names only complete.

    def _volume_cut(self, vol, index, chunk):
        """VolumeWriter's on_cut (the build thread): where the volume after ``vol`` starts."""
        state = self.diff.checkpoint(index, chunk)
        with self.checkpoint_lock:
            self.cuts[vol.number] = (vol, state)
        self._record_checkpoints()

    def _volume_ready(self, vol):
        """The encrypt stage: ``vol`` is encrypted and hashed, about to be uploaded."""
        with self.checkpoint_lock:
            self.ready.add(vol.number)
        self._record_checkpoints()

    def _record_checkpoints(self):
        """Record a checkpoint for each volume that is ready, cut, and has every volume before it
        recorded: in the archive dir, then as a segment at the target. One thread at a time, in
        volume order."""
        with self.checkpoint_lock:
            while True:
                last = self.record.last
                number = last.number + 1 if last else 1
                if number not in self.ready or number not in self.cuts:
                    return
                vol, state = self.cuts.pop(number)
                r = vol.result
                self.record.checkpoints.append(resume.Checkpoint(
                    number, naming.finished_name(vol.name, self.target.names), r.sha1, r.size, vol.compress,
                    vol.info, state["sig_bytes"], state["filelist_bytes"], state["stats"],
                    state["next_index"], state["next_chunk"], state["next_file"]))
                # the archive dir's record at once; the target's copy every SEGMENT_EVERY seconds
                self.store.write(self.record)
                if _time.monotonic() - self.segment_time >= resume.SEGMENT_EVERY:
                    self._store_segment(len(self.record.checkpoints) - 1)

    def _store_segment(self, i):
        """Checkpoint ``i`` to the target, as a segment after the last one stored (in order, on
        the segments thread)."""
        def upload():
            self._before_upload()
            resume.upload_segment(self.sess, record, i, after, self.tmp, self.store.path(resume.SIGNATURES),
                                  self.store.path(resume.FILELIST))
        record = resume.Record(self.record.names, self.record.kind, self.record.fingerprint,
                               list(self.record.checkpoints[:i + 1]))
        after, self.last_segment, self.segment_time = self.last_segment, i, _time.monotonic()
        self.abort.watch(self.segments.submit(upload))

    def _before_upload(self):
        self.gate()
        # a run that lost its target lock stops at its next volume, not only at the commit
        self.sess.target_lock.raise_if_lost()

    def _unrename_kept(self):
        """A resumed set whose commit had begun: its volumes already renamed get their unfinished
        names back first, so that removing that commit's manifest never leaves volumes under final
        names without one (duplicity aborts on those)."""
        for cp in self.kept:
            if cp.at_final_name:
                self.sess.require_target_lock()
                self.sess.backend.rename(cp.name, naming.unfinished_name(cp.name, self.target.names))
                cp.at_final_name = False

    def _volume_name(self, number):
        """Where volume ``number`` is uploaded: its unfinished name, until the commit."""
        prefix = self.target.names
        return naming.unfinished_name(
            naming.volume_name(number, suffix=self.sess.crypto.suffix, prefix=prefix, **self.names), prefix)

    def _side_job(self, fn, *args, **kwargs):
        """Run ``fn`` in the side pool; its failure fails the run at once."""
        return self.abort.watch(self.side.submit(fn, *args, **kwargs))

    def _warn(self, msg):      # something could not be read: the run goes on, the exit code says so
        self.warnings.append(msg)
        log.warning("%s", msg)

    def _stop(self):
        """After the last step or the first failure: every thread of the run ended, its local
        files closed, its temp dir gone."""
        for stage in (self.encrypt, self.uploads):
            if stage is not None:
                stage.join()
        for pool in (self.sig_thread, self.side, self.segments):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if self.volumes is not None:
            self.volumes.close_files()
        self.files.close()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _line in f)


def _set_for(kind, names):
    from .collection import BackupSet
    if kind == "full":
        return BackupSet("full", names["time"], names["time"])
    return BackupSet("inc", names["start_time"], names["end_time"])


def _check_source(last, hostname, localdir):
    if last.hostname and last.hostname not in (hostname, socket.getfqdn()):
        raise CairnError(f"the last backup at this target was made on host {last.hostname!r}, "
                         f"this is {hostname!r}; use --allow-source-mismatch if that is intended",
                         ExitCode.HOSTNAME_MISMATCH)
    if last.localdir and last.localdir != localdir:
        raise CairnError(f"the last backup at this target was of {os.fsdecode(last.localdir)!r}, "
                         f"this run backs up {os.fsdecode(localdir)!r}; use --allow-source-mismatch "
                         "if that is intended", ExitCode.SOURCE_PATH_MISMATCH)


def _check_remote_manifest(sess, s, tmpdir):
    """The remote manifest of the set we extend must equal the cached one (duplicity's check).

    It also proves the passphrase before anything is written: a wrong one fails here (exit 31).
    With public-key encryption and no secret key on this host the check is skipped, as a host
    that only encrypts cannot read its own archive.
    """
    fetched = os.path.join(tmpdir, "remote-" + s.manifest)
    sess.backend.get(s.manifest, fetched)
    plain = fetched + ".plain"
    try:
        sess.crypto.decode_file(s.manifest, fetched, plain)
    except NoSecretKey:
        # only that: a corrupt remote manifest, a wrong passphrase, are errors here too
        log.debug("no secret key to check the remote manifest; relying on the cache")
        return
    cached = os.path.join(sess.cache.path, local_manifest_name(s, sess.cache.names))
    with open(plain, "rb") as a, open(cached, "rb") as b:
        if a.read() != b.read():
            raise ManifestMismatch(f"the manifest of the last backup at the target ({s.manifest}) differs "
                                   f"from the cached copy in {sess.cache.path}; remove the cached "
                                   "copy to fetch it again, or check who else writes to this target")


class _Gate:
    """Runs a check once, before the first write to the target (the first upload, or the
    commit); a failed check fails the run, so no later caller gets past it."""

    def __init__(self, check):
        self.check = check
        self.lock = threading.Lock()
        self.passed = False

    def __call__(self):
        with self.lock:
            if not self.passed:
                self.check()
                self.passed = True


def _check_uploaded(sess, results):
    """Before the commit: the lock is still ours and the target lists every volume this run
    uploaded, at the size uploaded where the backend can tell (BackendError naming the others)."""
    sess.require_target_lock()
    listed = set(sess.backend.list())
    bad = [f"{r.name} (missing)" for r in results if r.name not in listed]
    for r in results:
        size = sess.backend.size(r.name) if r.name in listed else None
        if size is not None and size != r.size:
            bad.append(f"{r.name} ({size} bytes stored, {r.size} uploaded)")
    if bad:
        raise BackendError(f"the target lost volume(s) of this backup set, so it is not committed: "
                           f"{', '.join(bad)}; check who else writes to or prunes this target")


def _remove_interrupted(sess, col, keep=()):
    """Delete the remains of an interrupted run: sets newer than the last complete one, and the
    files of sets that never reached their commit (unfinished names), but those in ``keep``
    (the volumes and records of the set this run resumes)."""
    sess.require_target_lock()     # only the lock holder deletes: no other writer is live
    last = col.last_backup_time() or 0
    stale = [s for s in col.incomplete if s.end_time >= last]
    unfinished = sorted(n for n in col.unfinished.values() if n not in keep)
    prefix = sess.opts.names
    # half-uploaded files of a killed run (a temp name until the upload completes)
    unfinished += sorted(n for n in col.foreign if n.startswith(TEMP_PREFIX) and (
        naming.parse(n[len(TEMP_PREFIX):], prefix) is not None
        or naming.unfinished_of(n[len(TEMP_PREFIX):], prefix) is not None))
    if not stale and not unfinished:
        return
    if not sess.target_lock.previous_writer_gone:
        log.warning("leaving %d set(s) and %d unfinished file(s) of an interrupted run: this run took "
                    "over a lock whose writer may still run; a later run or `cleanup --force` removes "
                    "them", len(stale), len(unfinished))
        return
    names = [n for s in stale for n in s.names] + unfinished
    log.warning("removing %d file(s) left by an interrupted run (%d set(s) without signatures, %d "
                "unfinished file(s))", len(names), len(stale), len(unfinished))
    sess.backend.delete(names)
    sess.cache.forget(stale)
