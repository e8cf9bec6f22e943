# SPDX-License-Identifier: GPL-3.0-or-later
"""rsync signatures, deltas and patches through the system librsync (cffi, ABI mode).

Streaming jobs: feed bytes, get bytes; memory is bounded by the piece size, never by the file.
Signatures use duplicity's parameters: MD4, 8-byte strong sums, rollsum (magic 0x72730136).
cffi drops the GIL around every librsync call, so jobs run beside gpg and other threads.
"""
import math
import os
import threading

from .errors import CairnError, CorruptArchive

RS_DONE, RS_BLOCKED = 0, 1
RS_IO_ERROR, RS_INPUT_ENDED = 100, 103
RS_MD4_SIG_MAGIC = 0x72730136
STRONG_LEN = 8
_OUT_SIZE = 256 * 1024

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
char const *rs_strerror(rs_result r);
rs_result rs_job_iter(rs_job_t *job, rs_buffers_t *buffers);
rs_result rs_job_free(rs_job_t *);
rs_job_t *rs_sig_begin(size_t block_len, size_t strong_len, unsigned int sig_magic);
rs_job_t *rs_delta_begin(rs_signature_t *);
rs_job_t *rs_loadsig_begin(rs_signature_t **);
rs_result rs_build_hash_table(rs_signature_t *sums);
rs_job_t *rs_patch_begin(rs_copy_cb *copy_cb, void *copy_arg);
void rs_free_sumset(rs_signature_t *);
void rs_trace_set_level(int level);
"""

_lock = threading.Lock()
_ffi = _lib = _copy_cb = None


def _load():
    global _ffi, _lib, _copy_cb
    if _lib is not None:
        return _ffi, _lib
    with _lock:
        if _lib is None:
            try:
                import cffi
            except ImportError:
                raise CairnError("the Python package cffi is missing (pip install cffi)") from None
            ffi = cffi.FFI()
            ffi.cdef(_CDEF)
            lib = None
            errors = []
            for name in ("librsync.so.2", "librsync.so"):
                try:
                    lib = ffi.dlopen(name)
                    break
                except OSError as e:
                    errors.append(str(e))
            if lib is None:
                raise CairnError("librsync is not installed: install librsync2 (Debian/Ubuntu) or "
                                 "librsync (RHEL/Fedora)")
            _copy_cb = ffi.callback("rs_copy_cb", _patch_copy)
            lib.rs_trace_set_level(0)    # errors come back as exceptions, not stderr noise
            _ffi = ffi
            _lib = lib
    return _ffi, _lib


def block_len_for(size, max_blocksize=0):
    """duplicity 3.x: sqrt of the size rounded up to a multiple of 512 (at least 512)."""
    n = math.isqrt(max(1, int(size)))
    n = max(512, -(-n // 512) * 512)
    if max_blocksize and n > max_blocksize:
        n = max(512, max_blocksize)
    return n


class _Job:
    """Drives one rs_job_t with rs_job_iter over caller-supplied pieces."""

    what = "librsync job"

    def __init__(self):
        self.ffi, self.lib = _load()
        self.job = None
        self.done = False
        self._bufs = self.ffi.new("rs_buffers_t *")
        self._out = self.ffi.new("char[]", _OUT_SIZE)
        self._pending = b""
        self._error = None

    def _start(self, job):
        if job == self.ffi.NULL:
            raise CorruptArchive(f"{self.what}: librsync could not start the job")
        self.job = job

    def _run(self, data, eof):
        if self.done:
            if data:
                raise CorruptArchive(f"{self.what}: data after the end of the stream")
            return b""
        if self._pending:
            data = self._pending + bytes(data)
            self._pending = b""
        ffi, lib = self.ffi, self.lib
        keep = ffi.from_buffer(data) if data else ffi.NULL
        b = self._bufs
        b.next_in = ffi.cast("char *", keep)
        b.avail_in = len(data)
        b.eof_in = 1 if eof else 0
        out = []
        while True:
            before_in = b.avail_in
            b.next_out = self._out
            b.avail_out = _OUT_SIZE
            r = lib.rs_job_iter(self.job, b)
            n = _OUT_SIZE - b.avail_out
            if n:
                out.append(ffi.buffer(self._out, n)[:])
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            if r == RS_DONE:
                self.done = True
                break
            if r != RS_BLOCKED:
                msg = ffi.string(lib.rs_strerror(r)).decode(errors="replace")
                raise CorruptArchive(f"{self.what}: {msg}")
            if b.avail_out == 0:
                continue                        # output full: go on draining
            if b.avail_in and (b.avail_in != before_in or n):
                continue                        # progress made, more input to give
            if b.avail_in:
                # librsync wants more input before it can use the rest: keep it for later
                self._pending = ffi.buffer(b.next_in, b.avail_in)[:]
            if eof and not n and b.avail_in == before_in:
                raise CorruptArchive(f"{self.what}: input ended before the stream was complete")
            if not eof:
                break
        return b"".join(out)

    def update(self, data):
        return self._run(data, False)

    def finish(self):
        try:
            return self._run(b"", True)
        finally:
            self.close()

    def close(self):
        if self.job is not None:
            self.lib.rs_job_free(self.job)
            self.job = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class SignatureJob(_Job):
    what = "signature"

    def __init__(self, block_len):
        super().__init__()
        self._start(self.lib.rs_sig_begin(block_len, STRONG_LEN, RS_MD4_SIG_MAGIC))


class _LoadedSignature:
    """A signature parsed into librsync's sumset with its hash table built."""

    def __init__(self, signature):
        ffi, lib = _load()
        self.lib = lib
        self.ptr = ffi.new("rs_signature_t **")
        job = _Job()
        job.what = "signature"
        job._start(lib.rs_loadsig_begin(self.ptr))
        try:
            job._run(signature, True)
        except CorruptArchive as e:
            self.free()
            raise CorruptArchive(f"bad rsync signature: {e}") from None
        finally:
            job.close()
        if self.ptr[0] == ffi.NULL:
            raise CorruptArchive("bad rsync signature: empty")
        r = lib.rs_build_hash_table(self.ptr[0])
        if r != RS_DONE:
            self.free()
            raise CorruptArchive("bad rsync signature: cannot index it")

    def free(self):
        if self.ptr is not None and self.ptr[0] != _ffi.NULL:
            self.lib.rs_free_sumset(self.ptr[0])
        self.ptr = None


class DeltaJob(_Job):
    what = "delta"

    def __init__(self, signature):
        super().__init__()
        self.sig = _LoadedSignature(signature)
        self._start(self.lib.rs_delta_begin(self.sig.ptr[0]))

    def close(self):
        super().close()
        if getattr(self, "sig", None) is not None:
            self.sig.free()
            self.sig = None


class PatchJob(_Job):
    """Applies a delta to ``basis``, a seekable binary file object."""

    what = "patch"

    def __init__(self, basis):
        super().__init__()
        self.basis = basis
        try:
            self._fd = basis.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None
        self._handle = self.ffi.new_handle(self)
        self._start(self.lib.rs_patch_begin(_copy_cb, self._handle))

    def _read(self, pos, n):
        if self._fd is not None:
            return os.pread(self._fd, n, pos)
        self.basis.seek(pos)
        return self.basis.read(n)


def _patch_copy(opaque, pos, len_p, buf_p):
    job = _ffi.from_handle(opaque)
    try:
        data = job._read(pos, len_p[0])
    except Exception as e:          # surfaced by PatchJob.update/finish
        job._error = CorruptArchive(f"patch: cannot read the basis file: {e}")
        return RS_IO_ERROR
    if not data:
        job._error = CorruptArchive("patch: the delta copies beyond the end of the basis file")
        return RS_INPUT_ENDED
    _ffi.memmove(buf_p[0], data, len(data))
    len_p[0] = len(data)
    return RS_DONE


def signature(data, block_len=None):
    job = SignatureJob(block_len or block_len_for(len(data)))
    return job.update(data) + job.finish()


def delta(sig, data):
    job = DeltaJob(sig)
    return job.update(data) + job.finish()


def patch(basis, delta_bytes):
    import io
    if isinstance(basis, (bytes, bytearray)):
        basis = io.BytesIO(basis)
    job = PatchJob(basis)
    return job.update(delta_bytes) + job.finish()
