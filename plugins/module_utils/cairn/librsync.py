# SPDX-License-Identifier: GPL-3.0-or-later
"""rsync signatures, deltas and patches through the system librsync (cffi, ABI mode).

The library (``librsync.so.2``: package librsync2 on Debian/Ubuntu, librsync on RHEL/Fedora) is
opened on first use, never at import time, so importing the engine cannot fail on a host without
it; the first job raises :class:`~.errors.CairnError` naming the package to install instead.

Every job is a streaming state machine driven with ``rs_job_iter``: feed it pieces of any size
with ``update()``, end it with ``finish()``. Each job owns one output buffer (256 KiB) that is
reused for its whole life, and large inputs are handed to librsync in slices of at most 1 MiB,
so memory stays bounded by the piece size, never by the file size. cffi drops the GIL around
every librsync call, so jobs run beside gpg, compression and other threads.

Signatures use duplicity's parameters: rollsum weak sums, MD4 strong sums truncated to 8 bytes
(magic 0x72730136), byte-identical to ``rdiff signature -R rollsum -H md4 -S 8 -b N``.

Every failure reported by librsync (a bad signature, a truncated or garbled delta, a delta that
copies beyond the end of its basis) raises :class:`~.errors.CorruptArchive`. A job is not
thread-safe: use one job from one thread at a time (different jobs in different threads are fine).
"""
from __future__ import annotations

import bisect
import collections
import io
import math
import os
import re
import stat
import threading

from .errors import CairnError, CorruptArchive

# rs_result
RS_DONE = 0
RS_BLOCKED = 1
RS_IO_ERROR = 100
RS_INPUT_ENDED = 103

# rs_magic_number
RS_DELTA_MAGIC = 0x72730236
RS_MD4_SIG_MAGIC = 0x72730136
RS_BLAKE2_SIG_MAGIC = 0x72730137
RS_RK_MD4_SIG_MAGIC = 0x72730146
RS_RK_BLAKE2_SIG_MAGIC = 0x72730147
# the longest strong sum each signature kind may carry (MD4: 16 bytes, BLAKE2: 32 bytes)
_SIG_MAX_STRONG = {RS_MD4_SIG_MAGIC: 16, RS_RK_MD4_SIG_MAGIC: 16,
                   RS_BLAKE2_SIG_MAGIC: 32, RS_RK_BLAKE2_SIG_MAGIC: 32}

STRONG_LEN = 8                  # duplicity's strong sum length (librsync < 1.0 default)
OUT_BUFFER_SIZE = 256 * 1024    # the one output buffer each job owns
MAX_IN_SLICE = 1024 * 1024      # the most input handed to one rs_job_iter call
MAX_BLOCK_LEN = 1 << 30         # librsync keeps block lengths in an int; larger is nonsense

_RS_LOG_WARNING = 4

_CDEF = """
typedef intmax_t rs_long_t;
typedef int rs_result;
typedef struct rs_job rs_job_t;
typedef struct rs_signature rs_signature_t;
typedef struct rs_buffers_s {
    char *next_in;
    size_t avail_in;
    int eof_in;
    char *next_out;
    size_t avail_out;
} rs_buffers_t;
typedef rs_result rs_copy_cb(void *opaque, rs_long_t pos, size_t *len, void **buf);
typedef void rs_trace_fn_t(int level, char const *msg);

char const *rs_strerror(rs_result r);
rs_result rs_job_iter(rs_job_t *job, rs_buffers_t *buffers);
rs_result rs_job_free(rs_job_t *job);
rs_job_t *rs_sig_begin(size_t block_len, size_t strong_len, unsigned int sig_magic);
rs_job_t *rs_loadsig_begin(rs_signature_t **sig);
rs_result rs_build_hash_table(rs_signature_t *sums);
void rs_free_sumset(rs_signature_t *sums);
rs_job_t *rs_delta_begin(rs_signature_t *sig);
rs_job_t *rs_patch_begin(rs_copy_cb *copy_cb, void *copy_arg);
void rs_trace_to(rs_trace_fn_t *fn);
void rs_trace_set_level(int level);
"""

_load_lock = threading.Lock()
_ffi = None
_lib = None
_alloc = None        # allocator that skips zeroing (the output buffer is always written first)
_copy_cb = None      # the one rs_copy_cb trampoline; each PatchJob passes its reader as opaque
_trace_cb = None     # keeps librsync's log lines for error messages instead of printing them
_tls = threading.local()


def _library_names():
    """Where to look for librsync, most specific first; find_library (which runs ldconfig, 25 ms
    here) only when the usual names are not there."""
    yield "librsync.so.2"
    yield "librsync.2.dylib"
    try:
        import ctypes.util
        found = ctypes.util.find_library("rsync")
    except Exception:       # find_library shells out; never let that break loading
        found = None
    if found:
        yield found
    yield "librsync.so"


def _load():
    """Open librsync once (thread-safe); return ``(ffi, lib)``."""
    global _ffi, _lib, _alloc, _copy_cb, _trace_cb
    if _lib is not None:
        return _ffi, _lib
    with _load_lock:
        if _lib is not None:
            return _ffi, _lib
        ffi = _new_ffi()
        lib = None
        tried = []
        for name in _library_names():
            try:
                lib = ffi.dlopen(name)
                break
            except OSError as exc:
                tried.append(f"{name}: {exc}")
        if lib is None:
            raise CairnError("cannot load the librsync library (librsync.so.2): install the package "
                             "librsync2 (Debian/Ubuntu) or librsync (RHEL/Fedora, from EPEL on RHEL)."
                             " Tried " + "; ".join(tried))
        copy_cb = ffi.callback("rs_copy_cb *", _copy_trampoline, error=RS_IO_ERROR)
        trace_cb = ffi.callback("rs_trace_fn_t *", _trace_sink)
        lib.rs_trace_to(trace_cb)
        lib.rs_trace_set_level(_RS_LOG_WARNING)
        _alloc = ffi.new_allocator(should_clear_after_alloc=False)
        _ffi, _copy_cb, _trace_cb = ffi, copy_cb, trace_cb
        _lib = lib
        return _ffi, _lib


def _new_ffi():
    """The FFI of _CDEF: the out-of-line module generated from it (_librsync_ffi.py), which
    needs only cffi's backend; else, with a cffi that does not take that module, _CDEF parsed
    here (pycparser's parser is built at every start: 30 ms, most of what loading costs)."""
    try:
        from ._librsync_ffi import ffi
        if ffi is not None:
            return ffi
    except Exception:       # noqa: BLE001 - any backend that refuses the module: parse instead
        pass
    try:
        import cffi
    except ImportError:
        raise CairnError("the Python package cffi is missing: install python3-cffi "
                         "(Debian/Ubuntu, RHEL/Fedora) or `pip install cffi`") from None
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    return ffi


def ffi_module_source():
    """The text of _librsync_ffi.py: cffi's out-of-line ABI module for _CDEF, laid out in
    short lines (``python -m cairn.librsync`` rewrites the file; a unit test checks it is
    current)."""
    import ast
    import tempfile
    import cffi
    builder = cffi.FFI()
    builder.cdef(_CDEF)
    builder.set_source("_librsync_ffi", None)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ffi.py")
        builder.emit_python_code(path)
        with open(path, encoding="ascii") as f:
            tree = ast.parse(f.read())
    call = next(n.value for n in tree.body if isinstance(n, ast.Assign))
    lines = ["# SPDX-License-Identifier: GPL-3.0-or-later",
             "# Generated from librsync._CDEF by cffi (out-of-line ABI mode): python -m cairn.librsync",
             "# rewrites it. Loading it needs only cffi's backend, not pycparser.",
             "try:", "    import _cffi_backend", "except ImportError:     # no cffi: librsync says what to install",
             "    ffi = None", "else:", "    ffi = _cffi_backend.FFI(",
             f"        {ast.literal_eval(call.args[0])!r},"]

    def value(v, indent):
        if isinstance(v, bytes):
            parts = [repr(v[i:i + 24]) for i in range(0, len(v), 24)] or ["b''"]
            if len(parts) == 1:
                return [parts[0]]
            return ["("] + [indent + "    " + p for p in parts] + [indent + ")"]
        if isinstance(v, tuple):
            out = ["("]
            for item in v:
                sub = value(item, indent + "    ")
                out += [indent + "    " + sub[0]] + sub[1:]
                out[-1] += ","
            return out + [indent + ")"]
        return [hex(v) if isinstance(v, int) and v > 9 else repr(v)]

    for kw in call.keywords:
        sub = value(ast.literal_eval(kw.value), "        ")
        lines += [f"        {kw.arg}={sub[0]}"] + sub[1:]
        lines[-1] += ","
    return "\n".join(lines + ["    )", ""])


def _trace_sink(level, msg):
    """rs_trace_fn_t: keep this thread's last few log lines for the next error message."""
    try:
        text = _ffi.string(msg).decode("utf-8", "replace").strip()
        # "librsync: ERROR: (rs_patch_s_header) got magic number ..." -> "got magic number ..."
        text = _LOG_PREFIX.sub("", text, count=1)
        lines = getattr(_tls, "lines", None)
        if lines is None:
            lines = _tls.lines = collections.deque(maxlen=4)
        lines.append(text)
    except BaseException:   # a log line is never worth an exception inside librsync
        pass


_LOG_PREFIX = re.compile(r"^librsync: (?:[A-Za-z!]+: )?(?:\([A-Za-z0-9_]+\) )?")


def _clear_log():
    lines = getattr(_tls, "lines", None)
    if lines:
        lines.clear()


def _last_log():
    """The most telling recent log line (not librsync's generic "... job failed" summary)."""
    lines = getattr(_tls, "lines", None)
    if not lines:
        return ""
    useful = [line for line in lines if " job failed: " not in line]
    lines.clear()
    return useful[-1] if useful else ""


def _describe(code):
    text = _ffi.string(_lib.rs_strerror(code)).decode("utf-8", "replace")
    detail = _last_log()
    return f"{text} [{code}]" + (f" ({detail})" if detail else "")


def block_len_for(size: int, max_blocksize: int = 0) -> int:
    """duplicity 3.x block length for a file of ``size`` bytes.

    The integer square root of the size rounded up to a multiple of 512 (at least 512); capped at
    ``max_blocksize`` when that is > 0 (duplicity's ``--max-blocksize``, default 0 = no cap).
    """
    n = max(1, math.isqrt(max(0, int(size))))
    n = -(-n // 512) * 512
    if max_blocksize and max_blocksize > 0:
        n = min(n, int(max_blocksize))
    return n


class _Job:
    """One rs_job_t driven with rs_job_iter over caller-supplied pieces."""

    _kind = "librsync job"        # used in error messages

    def __init__(self):
        # set first so close()/GC work whatever happens later in a subclass __init__
        self._job = None
        self._done = False
        self._bufs = None
        self._out = None

    def _start(self, job):
        ffi = _ffi
        if job == ffi.NULL:
            raise CorruptArchive(f"{self._kind}: librsync could not start the job")
        self._job = ffi.gc(job, _lib.rs_job_free)
        self._bufs = ffi.new("rs_buffers_t *")
        self._out = _alloc("char[]", OUT_BUFFER_SIZE)

    def _fail(self, message):
        """Free the job (it cannot go on after an error) and build the exception to raise."""
        self.close()
        return CorruptArchive(f"{self._kind}: {message}")

    def _callback_error(self):
        """An exception recorded by a callback of this job, or None."""
        return None

    def _pump(self, data, eof):
        """Feed ``data`` (and end of input if ``eof``); yield output pieces of <= 256 KiB.

        Abandoning the generator before it is exhausted leaves librsync in the middle of a piece,
        so the job is closed then.
        """
        if self._job is None:
            raise ValueError(f"{self._kind}: the job is closed")
        ffi = _ffi
        iterate = _lib.rs_job_iter
        job = self._job
        bufs = self._bufs
        out = self._out
        # One zero-copy view of the caller's buffer, sliced by pointer arithmetic and released
        # as soon as we are done. (No memoryview of our own: cffi + CPython crash when a frame
        # holding a from_buffer() of a memoryview is collected as part of a reference cycle.)
        keep = ffi.from_buffer(data)
        completed = False
        _clear_log()
        try:
            total = len(keep)
            start = 0
            while True:
                size = min(MAX_IN_SLICE, total - start)
                bufs.next_in = keep + start
                bufs.avail_in = size
                start += size
                last = start >= total
                bufs.eof_in = 1 if (eof and last) else 0
                while True:
                    in_before = bufs.avail_in
                    bufs.next_out = out
                    bufs.avail_out = OUT_BUFFER_SIZE
                    result = iterate(job, bufs)
                    produced = OUT_BUFFER_SIZE - bufs.avail_out
                    chunk = ffi.buffer(out, produced)[:] if produced else None
                    if result == RS_DONE:
                        self._done = True
                        if chunk:
                            yield chunk
                        break
                    if result != RS_BLOCKED:
                        err = self._callback_error()
                        if err is not None:
                            self.close()
                            try:
                                raise err
                            finally:
                                err = None      # no frame <-> traceback cycle
                        raise self._fail(_describe(result))
                    if chunk:
                        yield chunk
                    if bufs.avail_out == 0:
                        continue                  # output full: librsync may have more to give
                    if bufs.avail_in == 0 and not bufs.eof_in:
                        break                     # this slice is consumed; wait for more input
                    if not produced and bufs.avail_in == in_before:
                        # librsync itself reports a stall with input and output space as an
                        # internal error; this catches the same at end of input
                        raise self._fail("librsync made no progress (truncated input?)")
                if self._done:
                    trailing = bufs.avail_in + (total - start)
                    if trailing:
                        raise self._fail(f"{trailing} bytes of unexpected data after the end "
                                         "of the stream")
                    break
                if last:
                    break
            completed = True
        finally:
            # librsync never keeps a pointer into the input between calls: every slice is
            # consumed (or copied into its own buffer) before we return
            if bufs is not None:
                bufs.next_in = ffi.NULL
                bufs.avail_in = 0
            ffi.release(keep)
            if not completed:
                self.close()

    def update_iter(self, data):
        """Like :meth:`update`, but yield the output in pieces of at most 256 KiB.

        A patch can expand a few bytes of delta into gigabytes of copied basis data; this keeps
        memory bounded for that case. The generator must be exhausted before the next call.
        """
        if self._job is None:
            raise ValueError(f"{self._kind}: the job is closed")
        if self._done:                  # a patch ends with its END command
            if len(data):
                raise self._fail(f"{len(data)} bytes of unexpected data after the end of "
                                 "the stream")
            return
        if not len(data):
            return        # nothing to do: after every call librsync's output is fully drained
        yield from self._pump(data, False)

    def finish_iter(self):
        """Like :meth:`finish`, but yield the output in pieces of at most 256 KiB."""
        try:
            if not self._done:
                yield from self._pump(b"", True)
        finally:
            self.close()

    def update(self, data: bytes) -> bytes:
        """Feed a piece of input; return the output produced so far (may be ``b""``)."""
        return b"".join(self.update_iter(data))

    def finish(self) -> bytes:
        """Signal end of input; return the remaining output. The job is freed."""
        return b"".join(self.finish_iter())

    def close(self):
        """Free the librsync job now (also done on garbage collection). Idempotent."""
        job, self._job = self._job, None
        if job is not None:
            _ffi.release(job)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SignatureJob(_Job):
    """Streaming signature: ``rs_sig_begin(block_len, 8, RS_MD4_SIG_MAGIC)``."""

    _kind = "rsync signature"

    def __init__(self, block_len: int):
        super().__init__()
        block_len = int(block_len)
        if not 0 < block_len <= MAX_BLOCK_LEN:
            raise ValueError(f"block length {block_len} is out of range (1..{MAX_BLOCK_LEN})")
        ffi, lib = _load()
        self._start(lib.rs_sig_begin(block_len, STRONG_LEN, RS_MD4_SIG_MAGIC))


def signature_whole(data, block_len):
    """The signature of ``data`` (at most MAX_IN_SLICE bytes) in one call into librsync: what
    SignatureJob writes for it, without the streaming machinery, whose Python side costs more
    than librsync's work on a small file -- and most files of a backup are read in one piece."""
    block_len = int(block_len)
    if not 0 < block_len <= MAX_BLOCK_LEN:
        raise ValueError(f"block length {block_len} is out of range (1..{MAX_BLOCK_LEN})")
    n = len(data)
    if n > MAX_IN_SLICE:
        raise ValueError(f"signature_whole takes at most {MAX_IN_SLICE} bytes, not {n}")
    ffi, lib = _load()
    size = 12 + -(-n // block_len) * (4 + STRONG_LEN)      # the header, then each block's sums
    job = lib.rs_sig_begin(block_len, STRONG_LEN, RS_MD4_SIG_MAGIC)
    if job == ffi.NULL:
        raise CorruptArchive("rsync signature: librsync could not start the job")
    keep = ffi.from_buffer(data)
    try:
        bufs = ffi.new("rs_buffers_t *")
        out = _alloc("char[]", size)
        bufs.next_in, bufs.avail_in, bufs.eof_in = keep, n, 1
        bufs.next_out, bufs.avail_out = out, size
        _clear_log()
        result = lib.rs_job_iter(job, bufs)
        if result != RS_DONE or bufs.avail_in or bufs.avail_out:
            raise CorruptArchive(f"rsync signature: {_describe(result)}, {bufs.avail_in} bytes of input "
                                 f"and {bufs.avail_out} of output left")
        return ffi.buffer(out, size)[:]
    finally:
        ffi.release(keep)
        lib.rs_job_free(job)


def _check_signature_header(sig):
    """Reject signatures librsync would misread or trip an assertion on."""
    size = len(sig)
    if size < 12:
        raise CorruptArchive(f"bad rsync signature: {size} bytes, shorter than its 12-byte header")
    head = bytes(sig[:12])
    magic = int.from_bytes(head[0:4], "big")
    block_len = int.from_bytes(head[4:8], "big")
    strong_len = int.from_bytes(head[8:12], "big")
    if magic not in _SIG_MAX_STRONG:
        raise CorruptArchive(f"bad rsync signature: unknown magic number {magic:#010x}")
    if not 0 < block_len <= MAX_BLOCK_LEN:
        raise CorruptArchive(f"bad rsync signature: implausible block length {block_len}")
    max_strong = _SIG_MAX_STRONG[magic]
    if not 0 < strong_len <= max_strong:
        raise CorruptArchive(f"bad rsync signature: implausible strong sum length {strong_len}")
    if (size - 12) % (4 + strong_len):
        raise CorruptArchive(f"bad rsync signature: {size - 12} bytes of block sums is not a "
                             f"whole number of {4 + strong_len}-byte entries (truncated?)")


class _LoadSignatureJob(_Job):
    _kind = "bad rsync signature"


class LoadedSignature:
    """A signature loaded into librsync and indexed once, for the DeltaJobs of one thread (a
    delta counts its lookups in it: two threads need one each)."""

    def __init__(self, signature: bytes):
        self._sumset = None
        _check_signature_header(signature)
        ffi, lib = _load()
        holder = ffi.new("rs_signature_t **")
        loader = _LoadSignatureJob()
        loader._start(lib.rs_loadsig_begin(holder))
        if holder[0] == ffi.NULL:
            loader.close()
            raise CorruptArchive("bad rsync signature: librsync could not allocate it")
        # the loader does not own the sumset: it is ours from now on, whatever happens
        self._sumset = ffi.gc(holder[0], lib.rs_free_sumset)
        try:
            try:
                for _out in loader._pump(signature, True):
                    pass                      # loading a signature produces no output
                if not loader._done:
                    raise CorruptArchive("bad rsync signature: incomplete")
            finally:
                loader.close()
            result = lib.rs_build_hash_table(self._sumset)
            if result != RS_DONE:
                raise CorruptArchive(f"bad rsync signature: cannot index it: {_describe(result)}")
        except BaseException:
            self.close()
            raise

    def close(self):
        """Free it now (also done on garbage collection); no DeltaJob of it may be running."""
        sumset, self._sumset = self._sumset, None
        if sumset is not None:
            _ffi.release(sumset)


class DeltaJob(_Job):
    """Streaming delta of new data against a signature: bytes, or a LoadedSignature (which
    then stays its owner's, and must outlive the job)."""

    _kind = "rsync delta"

    def __init__(self, signature):
        super().__init__()
        self._loaded = None
        if isinstance(signature, LoadedSignature):
            loaded = signature
        else:
            loaded = self._loaded = LoadedSignature(signature)
        if loaded._sumset is None:
            raise ValueError("rsync delta: the signature is closed")
        try:
            self._start(_lib.rs_delta_begin(loaded._sumset))
        except BaseException:
            self.close()
            raise

    def close(self):
        super().close()             # the job first: it points at the sumset
        loaded, self._loaded = getattr(self, "_loaded", None), None
        if loaded is not None:
            loaded.close()


# --- deltas that need no basis copy ------------------------------------------------------------

_ARG_WIDTHS = (1, 2, 4, 8)      # the widths a command's arguments come in (librsync's prototab)


class InPlaceEdits:
    """A delta that turns the basis into the new file where it lies: its literal data written
    at their offsets (``writes``, [(offset, data)]), ranges of the basis copied to another offset
    (``moves``, [(offset, source, length)]), the file cut or grown to ``length``; every other
    copy command copies a range to the same offset, so nothing is done for it. No move reads a
    range that a write or a move changes (nor one that overlaps its own target), so the basis
    data every move reads is still there whatever the order they are done in. ``copied_to``:
    how much of the basis the copies use (more than the basis holds is a wrong basis)."""

    __slots__ = ("writes", "moves", "length", "copied_to")

    def __init__(self, writes, length, copied_to, moves=()):
        self.writes, self.length, self.copied_to = writes, length, copied_to
        self.moves = moves


def _reads_changed_data(moves, writes):
    """Whether a move's source overlaps a range that a write or a move changes."""
    changed = sorted([(offset, offset + len(data)) for offset, data in writes]
                     + [(offset, offset + n) for offset, _source, n in moves])
    ends = [end for _start, end in changed]     # the ranges are disjoint: sorted by end too
    for _offset, source, n in moves:
        k = bisect.bisect_right(ends, source)   # the first range that ends after the source starts
        if k < len(changed) and changed[k][0] < source + n:
            return True
    return False


def in_place_edits(delta):
    """``delta`` (one whole rsync delta, bytes) as InPlaceEdits, or None when a copy reads data
    that another command changes, or the delta is anything but well formed: PatchJob then
    applies it, and says what is wrong with it.

    Copies to another offset come from blocks librsync found twice in the basis (runs of zeros,
    repeated records), which most large files have: without them the file's first change in
    place would send the whole file through librsync."""
    mv = memoryview(delta)
    end = len(mv)
    if mv[:4] != RS_DELTA_MAGIC.to_bytes(4, "big"):
        return None
    pos, length, copied_to, writes, moves = 4, 0, 0, [], []

    def number(width):
        nonlocal pos
        if pos + width > end:
            return None
        value = int.from_bytes(mv[pos:pos + width], "big")
        pos += width
        return value

    while pos < end:
        op = mv[pos]
        pos += 1
        if op == 0:                         # the end command: nothing may follow it
            if pos != end or (moves and _reads_changed_data(moves, writes)):
                return None
            return InPlaceEdits(writes, length, copied_to, moves)
        if op <= 0x40:                      # a literal whose length is the command itself
            n = op
        elif op <= 0x44:                    # a literal with its length in 1, 2, 4 or 8 octets
            n = number(_ARG_WIDTHS[op - 0x41])
        elif op <= 0x54:                    # a copy: start and length, each 1, 2, 4 or 8 octets
            start = number(_ARG_WIDTHS[(op - 0x45) // 4])
            n = number(_ARG_WIDTHS[(op - 0x45) % 4])
            if start is None or n is None:
                return None
            if n:
                if start != length:
                    moves.append((length, start, n))
                copied_to = max(copied_to, start + n)
                length += n
            continue
        else:
            return None
        if n is None or pos + n > end:
            return None
        if n:
            writes.append((length, mv[pos:pos + n]))
        pos += n
        length += n
    return None                             # no end command


# --- a new signature from the delta -------------------------------------------------------------

def signature_header(block_len):
    """The 12 octets that open what SignatureJob(block_len) writes."""
    return (RS_MD4_SIG_MAGIC.to_bytes(4, "big") + int(block_len).to_bytes(4, "big")
            + STRONG_LEN.to_bytes(4, "big"))


def _command_length(op):
    """Octets of the delta command that ``op`` opens (op and arguments, not literal data)."""
    if op <= 0x40:
        return 1
    if op <= 0x44:
        return 1 + _ARG_WIDTHS[op - 0x41]
    if op <= 0x54:
        return 1 + _ARG_WIDTHS[(op - 0x45) // 4] + _ARG_WIDTHS[(op - 0x45) % 4]
    return None


class DeltaBlocks:
    """Reads a delta as it streams out of DeltaJob and sorts the blocks of the new file (at
    multiples of ``block_len``) by what a new signature needs for them.

    - A block the delta copies whole from a whole block of the basis has that block's bytes,
      so its signature entry is the basis block's entry: the delta found it by computing this
      very entry (weak sum and strong sum) over the new bytes and finding it in the signature.
      ``copied``: runs of them, (first block, end block, basis block minus block).
    - A block the delta carries whole as literal data is signed from those bytes, as they
      come (``run(sign, data)``: at once by default; a caller may hand it to another thread,
      in order, and must see it done before ``literal_entries``). ``literal``: runs of them,
      (first block, end block); the new file's last block counts when it is literal.
    - Any other block (partly copied, or copied from the basis at another offset) is to be
      read again.

    ``length``: the new file's length so far; ``malformed``: the stream did not parse (then
    nothing here is used)."""

    def __init__(self, block_len, run=None):
        self.block_len = block_len
        self.copied = []
        self.literal = []
        self.length = 0
        self.ended = False
        self.malformed = False
        self._run = run or (lambda fn, data: fn(data))
        self._literal = 0           # literal octets still to come in this command
        self._head = b""            # a command (or the magic) split between two pieces
        self._head_len = 4          # how long it is; the stream opens with the magic
        self._magic = True
        self._partial = None        # literal octets of the block being filled, from its start
        self._signer = SignatureJob(block_len)
        self._signed = []
        self._batch, self._batched = [], 0

    def close(self):
        self._signer.close()

    def feed(self, data):
        """The next piece of the delta: bytes, or a view of bytes that nothing changes later
        (its literal blocks may be signed later, in another thread)."""
        mv = memoryview(data)
        pos, end = 0, len(mv)
        while pos < end and not self.malformed:
            if self._literal:
                n = min(self._literal, end - pos)
                self._literal_data(mv[pos:pos + n])
                pos += n
                continue
            if self._head_len:      # finishing a split command
                n = min(self._head_len - len(self._head), end - pos)
                self._head += bytes(mv[pos:pos + n])
                pos += n
                if len(self._head) < self._head_len:
                    return
                head, self._head, self._head_len = self._head, b"", 0
                if self._magic:
                    self._magic = False
                    self.malformed = head != RS_DELTA_MAGIC.to_bytes(4, "big")
                else:
                    self._command(head)
                continue
            n = _command_length(mv[pos]) if not self.ended else None
            if n is None:
                self.malformed = True
            elif end - pos >= n:
                self._command(mv[pos:pos + n])
                pos += n
            else:
                self._head, self._head_len = b"", n

    def _command(self, head):
        op = head[0]
        if op == 0:
            self.ended = True
            if self._partial and self.length % self.block_len:     # the last block, short
                self._sign_blocks(self.length // self.block_len, bytes(self._partial))
            self._partial = None
            self._hand_on()
        elif op <= 0x40:
            self._literal = op
        elif op <= 0x44:
            self._literal = int.from_bytes(head[1:], "big")
        else:
            width = _ARG_WIDTHS[(op - 0x45) // 4]
            self._copy(int.from_bytes(head[1:1 + width], "big"), int.from_bytes(head[1 + width:], "big"))

    def _literal_data(self, mv):
        """``mv``: literal octets at ``self.length`` of the new file."""
        block, at, n = self.block_len, self.length, len(mv)
        self.length += n
        self._literal -= n
        pos = 0
        if self._partial is None:
            pos = -at % block               # from the next block boundary on
            if pos >= n:
                return
            self._partial = bytearray()
        elif self._partial:
            pos = min(block - len(self._partial), n)
            self._partial += mv[:pos]
            if len(self._partial) < block:
                return
            self._sign_blocks((at + pos) // block - 1, bytes(self._partial))
            self._partial = bytearray()
        whole = (n - pos) // block * block
        if whole:
            self._sign_blocks((at + pos) // block, mv[pos:pos + whole])
        self._partial += mv[pos + whole:]

    def _sign_blocks(self, first, data):
        end = first + -(-len(data) // self.block_len)
        if self.literal and self.literal[-1][1] == first:
            self.literal[-1] = (self.literal[-1][0], end)
        else:
            self.literal.append((first, end))
        # handed on in batches of a MiB: one hand-over per 64 KiB chunk costs more than it saves
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= 1 << 20:
            self._hand_on()

    def _hand_on(self):
        if self._batch:
            batch, self._batch, self._batched = self._batch, [], 0
            self._run(self._sign, batch)

    def _sign(self, batch):
        for data in batch:
            out = self._signer.update(bytes(data))
            if out:
                self._signed.append(out)

    def literal_entries(self):
        """The signature entries of the ``literal`` blocks, in their order (once every
        ``run`` has been done)."""
        self._signed.append(self._signer.finish())
        return b"".join(self._signed)[12:]

    def _copy(self, start, n):
        out, block = self.length, self.block_len
        self.length += n
        self._partial = None
        if (start - out) % block:
            return                  # shifted against the basis: no block lines up
        first, end = -(-out // block), (out + n) // block
        if first >= end:
            return
        shift = (start - out) // block
        runs = self.copied
        if runs and runs[-1][1] == first and runs[-1][2] == shift:
            runs[-1] = (runs[-1][0], end, shift)
        else:
            runs.append((first, end, shift))


def signature_from_delta(old_signature, blocks, length, read_blocks):
    """What SignatureJob(blocks.block_len) writes for the new file of ``length`` octets, whose
    delta against ``old_signature`` ``blocks`` (DeltaBlocks) read: the entries of the blocks
    it copied taken from ``old_signature``, those of the blocks it carried as literal data from
    ``blocks``, the others computed from ``read_blocks(first, end)``, an iterable of the new
    file's octets of blocks first to end - 1 (what it raises goes to the caller). Only an old
    signature of the same block length, MD4 and strong length gives entries; the old last
    block, which may be short, never does."""
    block = blocks.block_len
    head = signature_header(block)
    entry = 4 + STRONG_LEN
    count = -(-length // block)
    old = memoryview(old_signature)
    usable = (len(old) - 12) // entry - 1 if bytes(old[:12]) == head else 0
    whole = not blocks.malformed and blocks.ended and blocks.length == length
    literal = blocks.literal_entries() if whole else b""
    taken = []                      # (first, end, source, offset in it), in order
    at = 0
    for first, end in blocks.literal if whole else ():
        taken.append((first, end, literal, at))
        at += (end - first) * entry
    for first, end, shift in blocks.copied if whole and usable > 0 else ():
        first, end = max(first, -shift), min(end, usable - shift)
        if first < end:
            taken.append((first, end, old, 12 + (first + shift) * entry))
    taken.sort(key=lambda t: t[0])
    segments, done = [], 0          # (first, end, source or None, offset), in order
    for first, end, source, offset in taken:
        if first < done:
            raise CorruptArchive("rsync signature: a block both copied and literal")
        if first > done:
            segments.append((done, first, None, 0))
        segments.append((first, end, source, offset))
        done = end
    if done < count:
        segments.append((done, count, None, 0))
    fresh = []
    with SignatureJob(block) as job:
        for first, end, source, _offset in segments:
            if source is None:
                got = 0
                for data in read_blocks(first, end):
                    got += len(data)
                    fresh.append(job.update(data))
                if got != min(end * block, length) - first * block:
                    raise CorruptArchive("rsync signature: the new file's blocks did not read as counted")
        fresh.append(job.finish())
    fresh = b"".join(fresh)
    parts, at = [head], 12
    for first, end, source, offset in segments:
        n = (end - first) * entry
        if source is None:
            source, offset = fresh, at
            at += n
        part = source[offset:offset + n]
        if len(part) != n:
            raise CorruptArchive("rsync signature: fewer block sums than blocks")
        parts.append(part)
    if at != len(fresh) or done > count:
        raise CorruptArchive("rsync signature: the new file's blocks did not read as counted")
    return b"".join(parts)


class _BasisReader:
    """Serves librsync's copy callback from the basis. ``error`` keeps what went wrong."""

    def __init__(self, size):
        self.size = size            # None when unknown
        self.error = None

    def _clip(self, pos, want):
        """How many bytes to read at ``pos``, or None (error recorded) when beyond the end."""
        if pos < 0 or (self.size is not None and pos >= self.size):
            self.error = CorruptArchive(
                f"rsync delta: copies from offset {pos} but the basis file is only "
                f"{self.size} bytes long (wrong basis or corrupt delta)")
            return None
        if self.size is not None:
            want = min(want, self.size - pos)
        return want

    def _short(self, pos):
        self.error = CorruptArchive(f"rsync delta: copies from offset {pos}, beyond the end of "
                                    "the basis file (wrong basis or corrupt delta)")
        return RS_INPUT_ENDED


class _BytesBasis(_BasisReader):
    def __init__(self, data):
        ptr = _ffi.from_buffer(data)
        super().__init__(len(ptr))
        self._ptr = ptr

    def release(self):
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            _ffi.release(ptr)

    def __del__(self):      # runs before a reference cycle is torn down (see _Job._pump)
        try:
            self.release()
        except Exception:
            pass

    def copy(self, pos, len_p, buf_p):
        n = self._clip(pos, len_p[0])
        if n is None:
            return RS_INPUT_ENDED
        if self._ptr is None:
            raise ValueError("the basis was released")
        buf_p[0] = self._ptr + pos      # librsync copies from our buffer itself: no Python copy
        len_p[0] = n
        return RS_DONE


class _FdBasis(_BasisReader):
    """A real file: positional reads on its descriptor straight into librsync's buffer."""

    def __init__(self, fd, size):
        super().__init__(size)
        self._fd = fd

    def copy(self, pos, len_p, buf_p):
        n = self._clip(pos, len_p[0])
        if n is None:
            return RS_INPUT_ENDED
        dest = _ffi.buffer(_ffi.cast("char *", buf_p[0]), n)
        if _HAVE_PREADV:
            got = os.preadv(self._fd, [dest], pos)
        else:
            data = os.pread(self._fd, n, pos)
            got = len(data)
            dest[:got] = data
        if not got:
            return self._short(pos)
        len_p[0] = got
        return RS_DONE


class _FileBasis(_BasisReader):
    """Any seekable binary file object: seek + readinto (or read)."""

    def __init__(self, fileobj, size):
        super().__init__(size)
        self._f = fileobj
        self._readinto = getattr(fileobj, "readinto", None)

    def copy(self, pos, len_p, buf_p):
        n = self._clip(pos, len_p[0])
        if n is None:
            return RS_INPUT_ENDED
        f = self._f
        f.seek(pos)
        dest = _ffi.buffer(_ffi.cast("char *", buf_p[0]), n)
        if self._readinto is not None:
            got = self._readinto(dest)
            if got is None:
                raise BlockingIOError("the basis file object returned no data (non-blocking?)")
        else:
            data = f.read(n)
            got = len(data)
            if got > n:
                raise ValueError("the basis file object returned more data than asked for")
            dest[:got] = data
        if not got:
            return self._short(pos)
        len_p[0] = got
        return RS_DONE


_HAVE_PREADV = hasattr(os, "preadv")


def _make_reader(basis):
    if not (hasattr(basis, "read") or hasattr(basis, "readinto")):
        try:
            return _BytesBasis(basis)
        except TypeError:
            raise TypeError("basis must be a seekable binary file object or a bytes-like "
                            f"object, not {type(basis).__name__}") from None
    if getattr(basis, "writable", None) is not None:
        try:
            if basis.writable():
                basis.flush()           # positional reads below must see buffered writes
        except (OSError, ValueError):
            pass
    fd = None
    try:
        fd = basis.fileno()
    except (AttributeError, OSError, ValueError):   # io.UnsupportedOperation is both
        fd = None
    if fd is not None:
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                return _FdBasis(fd, st.st_size)
        except OSError:
            pass
    size = None
    try:
        here = basis.tell()
        size = basis.seek(0, io.SEEK_END)
        basis.seek(here)
    except (AttributeError, OSError, ValueError):
        size = None
    return _FileBasis(basis, size)


def _copy_trampoline(opaque, pos, len_p, buf_p):
    """rs_copy_cb: runs the PatchJob's reader; any exception is kept and re-raised by the job."""
    reader = _ffi.from_handle(opaque)
    try:
        return reader.copy(pos, len_p, buf_p)
    except BaseException as exc:    # KeyboardInterrupt included: raised again from update()
        reader.error = exc
        return RS_IO_ERROR


class PatchJob(_Job):
    """Streaming patch: apply a delta (fed with update/finish) to ``basis``.

    ``basis`` is a seekable binary file object (read with ``os.preadv`` on its descriptor when
    it is a regular file, else with seek + readinto) or a bytes-like object.
    """

    _kind = "rsync delta"

    def __init__(self, basis):
        super().__init__()
        self._handle = None
        self._reader = None
        ffi, lib = _load()
        self._reader = _make_reader(basis)
        self._handle = ffi.new_handle(self._reader)   # the reader never refers back: no cycle
        self._start(lib.rs_patch_begin(_copy_cb, self._handle))

    def _callback_error(self):
        reader = self._reader
        if reader is None or reader.error is None:
            return None
        err, reader.error = reader.error, None
        return err

    def close(self):
        super().close()           # the job first: it holds the handle
        self._handle = None
        release = getattr(getattr(self, "_reader", None), "release", None)
        if release is not None:
            release()


def signature(data: bytes, block_len: int | None = None) -> bytes:
    """Signature of ``data`` (block length ``block_len_for(len(data))`` unless given)."""
    if block_len is None:
        block_len = block_len_for(len(data))
    with SignatureJob(block_len) as job:
        return job.update(data) + job.finish()


def delta(signature: bytes, data: bytes) -> bytes:
    """Delta turning the file described by ``signature`` into ``data``."""
    with DeltaJob(signature) as job:
        out = [job.update(data)]
        out.append(job.finish())
        return b"".join(out)


def patch(basis, delta: bytes) -> bytes:
    """Apply ``delta`` to ``basis`` (bytes-like or a seekable binary file object)."""
    with PatchJob(basis) as job:
        out = [job.update(delta)]
        out.append(job.finish())
        return b"".join(out)


if __name__ == "__main__":
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_librsync_ffi.py"), "w",
              encoding="ascii") as out:
        out.write(ffi_module_source())
