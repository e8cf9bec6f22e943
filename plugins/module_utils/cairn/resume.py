# SPDX-License-Identifier: GPL-3.0-or-later
"""Resume of an interrupted backup: checkpoints of an unfinished set, kept in two places.

The volumes of a set being written go to the target under unfinished names
(naming.UNFINISHED_MARK), which duplicity does not read, and are renamed when the set commits.
Once a volume is encrypted and hashed (before its upload), and every volume before it, the run
records a checkpoint: each
volume's manifest entry, SHA1 and size, how much of the signature file and of the manifest's
file list belongs to the entries those volumes hold, the statistics so far, and where the next
volume starts: at an entry, or inside a file at a chunk, with what identifies that file (device,
inode, size, mtime and ctime in nanoseconds: a file whose ctime has not moved has not been
written to). The checkpoint is kept in the archive dir (private, plain) and at the target, one
encrypted segment per volume, so that a lost archive dir does not lose it.

The next run with the same options and the same place in the chain continues: it keeps the
volumes the target holds whole (an upload appears under its name only complete) at their
recorded size (and SHA1, where the target is a local directory), skips the entries they hold,
continues a file from its chunk if the file is the same, and uploads what follows. Anything else
(other keys, volume size, selection, source; a chain that moved on; the boundary file changed)
starts a new set and says why.
"""
import base64
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field

from . import naming, timespec
from .crypto import sha1_file
from .errors import BackendError, CairnError
from .localdirs import open_new, remove_file
from .manifest import VolumeInfo

log = logging.getLogger("cairn")

FORMAT = 1
_DIR = "resume"                 # in the archive dir
RECORD = "record.json"
SIGNATURES = "signatures.tar"
FILELIST = "filelist"


def _hex(index):
    return [c.hex() for c in index]


def _unhex(parts):
    return tuple(bytes.fromhex(p) for p in parts)


def fingerprint(target, opts, hostname, localdir, kind):
    """What must be the same for a set to be continued: everything that shapes its files."""
    c = target.crypto
    parts = {"kind": kind, "host": hostname, "localdir": localdir.hex(), "prefix": target.file_prefix,
             "crypto": [c.mode, sorted(c.recipients), sorted(c.hidden_recipients), c.sign_key or "",
                        list(c.gpg_options)],
             "volsize": opts.volsize, "rules": [[k, v if isinstance(v, (str, int)) or v is None else str(v)]
                                                for k, v in opts.rules],
             "max_blocksize": opts.max_blocksize, "compress": [opts.compress_level, opts.adaptive_compression]}
    # only when set, so that the sets of runs without them keep their fingerprints
    for key, value in (("plain", not c.compress), ("gpgsm", c.use_gpgsm), ("files_from", opts.files_from), ("copy_links", opts.copy_links),
                       ("null_separator", opts.null_separator),
                       ("prefix_archive", getattr(target, "file_prefix_archive", "")),
                       ("prefix_manifest", getattr(target, "file_prefix_manifest", "")),
                       ("prefix_signature", getattr(target, "file_prefix_signature", ""))):
        if value:
            parts[key] = value
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass
class Checkpoint:
    """The state after volume ``number``: what the next run needs to continue after it."""
    number: int
    name: str                        # the volume's final name
    sha1: str
    size: int
    compress: bool
    info: VolumeInfo
    sig_bytes: int                   # of the signature file, for entries wholly in volumes <= number
    filelist_bytes: int
    stats: dict
    next_index: tuple = None         # where the next volume starts
    next_chunk: int = None           # a chunk > 1: inside that file
    next_file: dict = None           # its identity (file_identity), when inside a file
    # found under its final name (a commit that was renaming when it stopped): the resuming run
    # renames it back before anything else (not stored in the record)
    at_final_name: bool = False

    def to_json(self):
        i = self.info
        return {"number": self.number, "name": self.name, "sha1": self.sha1, "size": self.size,
                "compress": self.compress, "start": _hex(i.start_index), "start_block": i.start_block,
                "end": _hex(i.end_index), "end_block": i.end_block, "sig_bytes": self.sig_bytes,
                "filelist_bytes": self.filelist_bytes, "stats": self.stats,
                "next_index": None if self.next_index is None else _hex(self.next_index),
                "next_chunk": self.next_chunk, "next_file": self.next_file}

    @classmethod
    def from_json(cls, d):
        info = VolumeInfo(int(d["number"]), _unhex(d["start"]), d["start_block"], _unhex(d["end"]),
                          d["end_block"], {"SHA1": str(d["sha1"])})
        return cls(int(d["number"]), str(d["name"]), str(d["sha1"]), int(d["size"]), bool(d["compress"]), info,
                   int(d["sig_bytes"]), int(d["filelist_bytes"]), dict(d["stats"]),
                   None if d.get("next_index") is None else _unhex(d["next_index"]),
                   d.get("next_chunk"), d.get("next_file"))


@dataclass
class Record:
    """The checkpoints of one unfinished set."""
    names: dict                      # time=, or start_time= and end_time=
    kind: str
    fingerprint: str
    checkpoints: list = field(default_factory=list)

    @property
    def last(self):
        return self.checkpoints[-1] if self.checkpoints else None

    def to_json(self):
        return {"format": FORMAT, "kind": self.kind, "names": self.names, "fingerprint": self.fingerprint,
                "checkpoints": [c.to_json() for c in self.checkpoints]}

    @classmethod
    def from_json(cls, d):
        if d.get("format") != FORMAT:
            raise ValueError("another format of resume record")
        names = {k: int(v) for k, v in d["names"].items() if k in ("time", "start_time", "end_time")}
        return cls(names, str(d["kind"]), str(d["fingerprint"]),
                   [Checkpoint.from_json(c) for c in d["checkpoints"]])

    def base(self, prefix=""):
        """The set's volume 1 name without its number and suffix: what its segments are named by."""
        return naming.set_base(prefix=prefix, **self.names)


def segment_name(record, number, prefix, suffix):
    """The unfinished name of checkpoint ``number``'s segment at the target."""
    return naming.unfinished_name(f"{record.base(prefix)}.resume.{number}{suffix}", prefix)


class LocalStore:
    """The checkpoint in the archive dir: the record, and the signature file and file list as
    the run writes them (so they outlive it)."""

    def __init__(self, cache_path):
        self.dir = os.path.join(cache_path, _DIR)

    def path(self, name):
        return os.path.join(self.dir, name)

    def ensure(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def read(self):
        try:
            with open(self.path(RECORD), encoding="utf-8") as f:
                return Record.from_json(json.load(f))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring an unreadable resume record in %s: %s", self.dir, e)
            return None

    def write(self, record):
        self.ensure()
        tmp = self.path(RECORD + f".tmp.{os.getpid()}")
        with open_new(tmp) as f:
            f.write(json.dumps(record.to_json()).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path(RECORD))

    def clear(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# The target's copy of the record is a segment at the first checkpoint, then at most this often:
# each is one more gpg run
# (a symmetric passphrase's key derivation costs about 0.15 s of CPU), and it only serves a run
# that lost its archive dir, which then redoes the volumes of a few more seconds.
SEGMENT_EVERY = 30.0


def upload_segment(sess, record, i, after, tmpdir, sig_path, filelist_path):
    """Put checkpoint ``i`` (of ``record.checkpoints``) at the target: the record up to it and the
    signature and file-list bytes since checkpoint ``after`` (the last one stored as a segment,
    -1: none), encrypted as the archive's files are."""
    last = record.checkpoints[i]
    before = record.checkpoints[after] if after >= 0 else None
    sig_from = before.sig_bytes if before else 0
    fl_from = before.filelist_bytes if before else 0
    upto = Record(record.names, record.kind, record.fingerprint, record.checkpoints[:i + 1])
    plain = os.path.join(tmpdir, f"resume-{last.number}.json")
    out = plain + ".out"
    try:
        with open_new(plain) as f:
            write_segment(f, upto.to_json(), sig_from, fl_from, (sig_path, sig_from, last.sig_bytes),
                          (filelist_path, fl_from, last.filelist_bytes))
        sess.crypto.encrypt_file(plain, out)
        sess.backend.put(out, segment_name(record, last.number, sess.opts.names, sess.crypto.suffix))
    finally:
        remove_file(plain)
        remove_file(out)


# A segment is the JSON document {"record", "sig_from", "filelist_from", "signatures", "filelist"}
# (base64 of the bytes), as json.dumps writes it. The first checkpoint of a full backup of many
# small files carries hundreds of MB of signatures: both ways stream the base64 in pieces, so a
# segment costs a few MiB of memory whatever its size.
_B64_PIECE = 3 << 20          # a multiple of 3: the pieces' base64 joins into the whole's
_SIGNATURES_AT = b'"signatures": "'
_FILELIST_AT = b'", "filelist": "'


def write_segment(f, record_json, sig_from, filelist_from, signatures, filelist):
    """Write a segment to ``f``; ``signatures`` and ``filelist`` are (path, start, end) ranges.
    The bytes are json.dumps's of the same document (what earlier versions wrote)."""
    head = json.dumps({"record": record_json, "sig_from": sig_from, "filelist_from": filelist_from,
                       "signatures": ""})
    f.write(head[:-2].encode())               # up to the opening quote of "signatures"
    _write_base64(f, *signatures)
    f.write(_FILELIST_AT)
    _write_base64(f, *filelist)
    f.write(b'"}')


def _write_base64(f, path, start, end):
    with open(path, "rb") as src:
        src.seek(start)
        left = end - start
        while left > 0:
            piece = src.read(min(left, _B64_PIECE))
            if not piece:
                break           # as a short read did before: the bytes there are, no more
            f.write(base64.b64encode(piece))
            left -= len(piece)


def read_segment(f, sig_out, filelist_out):
    """Read a segment from ``f`` (binary): the signatures and file list are written to
    ``sig_out`` and ``filelist_out`` as they are decoded; returns the rest of the document
    ({"record", "sig_from", "filelist_from"}). A document of another layout than
    write_segment's is read whole with json. ValueError when it is not a segment."""
    head = _read_until(f, _SIGNATURES_AT, limit=64 << 20)
    body = _head_of(head) if head is not None else None
    if body is None:
        f.seek(0)
        body = json.loads(f.read())
        sig_out.write(base64.b64decode(body["signatures"], validate=True))
        filelist_out.write(base64.b64decode(body["filelist"], validate=True))
        return body
    _copy_base64(f, sig_out)
    if f.read(len(_FILELIST_AT) - 1) != _FILELIST_AT[1:]:
        raise ValueError("a resume segment without its file list")
    _copy_base64(f, filelist_out)
    if f.read(1) != b"}" or f.read(1):
        raise ValueError("a resume segment with something after its file list")
    return body


def _head_of(head):
    """The document's fields before its signatures, when ``head`` is exactly what
    write_segment writes before them; else None."""
    try:
        body = json.loads(head + b'"}')
        mine = json.dumps({"record": body["record"], "sig_from": body["sig_from"],
                           "filelist_from": body["filelist_from"], "signatures": ""})
    except (ValueError, KeyError, TypeError):
        return None
    return body if mine[:-2].encode() == head else None


def _read_until(f, marker, limit):
    """The bytes of ``f`` up to and including ``marker``, or None when it is not in the first
    ``limit`` bytes (``f`` is then at an unknown place)."""
    data = b""
    while len(data) < limit:
        piece = f.read(1 << 16)
        if not piece:
            return None
        data += piece
        at = data.find(marker, max(0, len(data) - len(piece) - len(marker)))
        if at >= 0:
            f.seek(at + len(marker) - len(data), os.SEEK_CUR)
            return data[:at + len(marker)]
    return None


def _copy_base64(f, out):
    """Decode base64 from ``f`` into ``out`` up to its closing quote, after which ``f`` is left.
    ValueError when the file ends first or the text is not base64."""
    carry = b""
    while True:
        piece = f.read(1 << 20)
        if not piece:
            raise ValueError("a resume segment cut short")
        quote = piece.find(b'"')
        data = carry + (piece if quote < 0 else piece[:quote])
        if quote >= 0:
            out.write(base64.b64decode(data, validate=True))
            f.seek(quote + 1 - len(piece), os.SEEK_CUR)
            return
        whole = len(data) - len(data) % 4
        out.write(base64.b64decode(data[:whole], validate=True))
        carry = data[whole:]


def fetch_from_target(sess, col, tmpdir):
    """The newest checkpoint the target holds, with the signature and file-list bytes rebuilt
    from its segments into the local store; None when there is none or it cannot be read."""
    prefix = sess.opts.names
    segments = {}
    for final, unfinished in col.unfinished.items():
        base, sep, rest = final.rpartition(".resume.")
        number = rest.split(".", 1)[0]
        if sep and number.isdigit():
            segments.setdefault(base, {})[int(number)] = (unfinished, final)
    if not segments:
        return None
    base = max(segments, key=lambda b: max(segments[b]))
    numbers = sorted(segments[base])       # each continues the one before (checked as read)
    store = LocalStore(sess.cache.path)
    store.clear()
    store.ensure()
    record = None
    try:
        with open_new(store.path(SIGNATURES)) as sig, open_new(store.path(FILELIST)) as fl:
            for n in numbers:
                unfinished, final = segments[base][n]
                fetched = os.path.join(tmpdir, f"segment-{n}")
                plain = fetched + ".plain"
                sess.backend.get(unfinished, fetched)
                sess.crypto.decode_file(final, fetched, plain)
                remove_file(fetched)
                at = (sig.tell(), fl.tell())
                try:
                    with open(plain, "rb") as f:
                        body = read_segment(f, sig, fl)
                finally:
                    remove_file(plain)
                if (body["sig_from"], body["filelist_from"]) != at:
                    raise ValueError("the segments do not follow each other")
                record = Record.from_json(body["record"])
        if record is None or record.base(prefix) != base:
            raise ValueError("the segments name another set")
    except CairnError as e:
        log.warning("cannot read the resume segments at the target (%s); not resuming from them", e)
        store.clear()
        return None
    except (ValueError, KeyError, TypeError, OSError) as e:
        log.warning("the resume segments at the target cannot be used (%s); not resuming from them", e)
        store.clear()
        return None
    store.write(record)
    return record


def kept_volumes(sess, record, listing):
    """The checkpoints whose volumes the target still holds whole, from the first: under their
    unfinished names, or their final ones when a commit stopped while renaming (``at_final_name``).
    A volume that is missing, of another size, or (where the target is a local directory) of
    another SHA1 ends the run of usable ones."""
    prefix = sess.opts.names
    kept = []
    for cp in record.checkpoints:
        where = naming.unfinished_name(cp.name, prefix)
        if where not in listing:
            if cp.name not in listing:
                break
            where = cp.name
            cp.at_final_name = True
        try:
            size = sess.backend.size(where)
        except BackendError:
            size = None
        if size is not None and size != cp.size:
            break
        path = sess.backend.local_path(where)
        if path is not None:
            if sha1_file(path) != cp.sha1:
                break
        kept.append(cp)
    return kept


def truncate(path, size):
    """Cut a local file back to ``size`` bytes (what a checkpoint counted)."""
    with open(path, "r+b") as f:
        f.truncate(size)


@dataclass
class Resumption:
    """An interrupted set this run continues: its record, cut back to the volumes kept."""
    record: Record

    @property
    def last(self):
        return self.record.last

    @property
    def first_new_volume(self):
        return self.last.number + 1

    @property
    def resume_at(self):
        """Where DiffWriter continues: (index, chunk inside that file or None, the file's identity)."""
        return (self.last.next_index, self.last.next_chunk, self.last.next_file)

    def kept_names(self, prefix, suffix):
        """The unfinished files at the target that this run keeps: its volumes and segments."""
        names = set()
        for cp in self.record.checkpoints:
            names.add(naming.unfinished_name(cp.name, prefix))
            names.add(segment_name(self.record, cp.number, prefix, suffix))
        return names


def find(sess, col, store, tmpdir, *, kind, fingerprint_now, chain_end, last_time):
    """The interrupted set this run can continue, or None (saying why, when there was one).

    The record comes from the archive dir, else from the segments at the target. It is used
    only by a run of the same kind and options, at the same place in the chain, after a writer
    that is gone, and only as far as its volumes are whole at the target."""
    record, where = store.read(), "the archive dir"
    if record is None:
        if not col.unfinished:
            return None
        record, where = fetch_from_target(sess, col, tmpdir), "the target"
        if record is None:
            return None
    set_time = record.names.get("time", record.names.get("end_time"))
    if any(s.end_time == set_time and s.complete and s.signature for s in col.sets):
        store.clear()             # it was committed; only the record was left behind
        return None
    why = None
    if not sess.target_lock.previous_writer_gone:
        why = "the writer whose lock this run took over may still be running"
    elif record.kind != kind:
        why = f"it was a{'n' if record.kind == 'incremental' else ''} {record.kind} backup and this run " \
              f"is a{'n' if kind == 'incremental' else ''} {kind} one"
    elif record.fingerprint != fingerprint_now:
        why = ("it was written with other options (keys, volume size, selection, compression, source "
               "directory or file prefix)")
    elif kind == "incremental" and record.names.get("start_time") != chain_end:
        why = "the chain it continued has changed since"
    elif kind == "full" and last_time is not None and set_time <= last_time:
        why = "a newer backup has been made since"
    else:
        kept = kept_volumes(sess, record, set(col.names))
        if not kept:
            why = "none of its volumes is whole at the target"
        else:
            record.checkpoints = kept
            log.info("resuming the interrupted %s backup set of %s (record from %s): %d volume(s) kept",
                     kind, timespec.to_iso(set_time), where, len(kept))
            return Resumption(record)
    log.warning("not resuming the interrupted backup set (record from %s): %s; starting a new set", where, why)
    store.clear()
    return None
