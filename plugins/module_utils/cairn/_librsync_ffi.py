# SPDX-License-Identifier: GPL-3.0-or-later
# Generated from librsync._CDEF by cffi (out-of-line ABI mode): python -m cairn.librsync
# rewrites it. Loading it needs only cffi's backend, not pycparser.
try:
    import _cffi_backend
except ImportError:     # no cffi: librsync says what to install
    ffi = None
else:
    ffi = _cffi_backend.FFI(
        '_librsync_ffi',
        _version=0x2601,
        _types=(
            b"\x00\x00'\r\x00\x00\x07\x01\x00\x00\x00\x0f\x00\x00\x01\r\x00\x002\x03\x00\x00\x00\x0f"
            b'\x00\x00\x01\r\x00\x00\x04\x11\x00\x001\x03\x00\x00\x00\x0f\x00\x00\x01\r\x00\x003\x03'
            b'\x00\x00\x00\x0f\x00\x00\x01\r\x00\x004\x03\x00\x00.\x01\x00\x00\x1e\x03\x00\x00\x0e\x03'
            b'\x00\x00\x00\x0f\x00\x00\x04\r\x00\x00\r\x03\x00\x00\x0e\x11\x00\x00\x00\x0f\x00\x00\x04\r'
            b'\x00\x00\x0b\x03\x00\x00\x00\x0f\x00\x00\x04\r\x00\x00\x0b\x11\x00\x00\x00\x0f\x00\x00\x04\r'
            b'\x00\x00\x1c\x01\x00\x00\x1c\x01\x00\x00\x08\x01\x00\x00\x00\x0f\x00\x004\r\x00\x00\x07\x01'
            b'\x00\x00\x00\x0f\x00\x004\r\x00\x00\x07\x01\x00\x000\x03\x00\x00\x00\x0f\x00\x004\r'
            b'\x00\x00\x0b\x11\x00\x00\x00\x0f\x00\x004\r\x00\x00%\x03\x00\x00\x00\x0f\x00\x000\x03'
            b'\x00\x00\x02\x01\x00\x00\x00\t\x00\x00\x01\t\x00\x00\x02\t\x00\x00\x00\x01'
        ),
        _globals=(
            b'\x00\x00\n#rs_build_hash_table',
            0,
            b'\x00\x00\x1a#rs_delta_begin',
            0,
            b'\x00\x00)#rs_free_sumset',
            0,
            b'\x00\x00\x03#rs_job_free',
            0,
            b'\x00\x00\x06#rs_job_iter',
            0,
            b'\x00\x00\x17#rs_loadsig_begin',
            0,
            b'\x00\x00\x13#rs_patch_begin',
            0,
            b'\x00\x00\x1d#rs_sig_begin',
            0,
            b'\x00\x00\x00#rs_strerror',
            0,
            b'\x00\x00"#rs_trace_set_level',
            0,
            b'\x00\x00,#rs_trace_to',
            0,
        ),
        _struct_unions=(
            (
                b'\x00\x00\x001\x00\x00\x00\x02rs_buffers_s',
                b'\x00\x00/\x11next_in',
                b'\x00\x00\x1e\x11avail_in',
                b'\x00\x00\x01\x11eof_in',
                b'\x00\x00/\x11next_out',
                b'\x00\x00\x1e\x11avail_out',
            ),
            (
                b'\x00\x00\x002\x00\x00\x00\x10rs_job',
            ),
            (
                b'\x00\x00\x003\x00\x00\x00\x10rs_signature',
            ),
        ),
        _typenames=(
            b'\x00\x00\x001rs_buffers_t',
            b'\x00\x00\x00\rrs_copy_cb',
            b'\x00\x00\x002rs_job_t',
            b'\x00\x00\x00\x0frs_long_t',
            b'\x00\x00\x00\x01rs_result',
            b'\x00\x00\x003rs_signature_t',
            b'\x00\x00\x00%rs_trace_fn_t',
        ),
    )
