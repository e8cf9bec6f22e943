# SPDX-License-Identifier: GPL-3.0-or-later
"""The resume segment's document: the same bytes as json.dumps of it (what earlier versions
wrote and read), read back from either, and written and read in bounded memory."""
import base64
import io
import json
import os
import random
import tracemalloc

import pytest

from cairn import resume

RECORD = {"names": "duplicity", "kind": "full", "fingerprint": "ab" * 20,
          "checkpoints": [{"number": 1, "next_file": 'a "quoted" "signatures": "name'}]}


def files(tmp_path, sig, fl):
    (tmp_path / "sig").write_bytes(sig)
    (tmp_path / "fl").write_bytes(fl)
    return str(tmp_path / "sig"), str(tmp_path / "fl")


def old_document(sig, fl, sig_from, fl_from):
    """What upload_segment wrote before it streamed."""
    return json.dumps({"record": RECORD, "sig_from": sig_from, "filelist_from": fl_from,
                       "signatures": base64.b64encode(sig[sig_from:]).decode(),
                       "filelist": base64.b64encode(fl[fl_from:]).decode()}).encode()


@pytest.mark.parametrize("n_sig,n_fl", [(0, 0), (1, 2), (5, 3), (resume._B64_PIECE + 1, 7),
                                        (2 * resume._B64_PIECE + 2, resume._B64_PIECE - 1)])
def test_written_as_json_dumps_writes_it_and_read_back(tmp_path, n_sig, n_fl):
    rnd = random.Random(n_sig)
    sig, fl = rnd.randbytes(n_sig + 10), rnd.randbytes(n_fl + 4)
    sig_path, fl_path = files(tmp_path, sig, fl)
    out = io.BytesIO()
    resume.write_segment(out, RECORD, 10, 4, (sig_path, 10, len(sig)), (fl_path, 4, len(fl)))
    assert out.getvalue() == old_document(sig, fl, 10, 4)
    for doc in (out.getvalue(), old_document(sig, fl, 10, 4)):
        got_sig, got_fl = io.BytesIO(), io.BytesIO()
        body = resume.read_segment(io.BytesIO(doc), got_sig, got_fl)
        assert (body["record"], body["sig_from"], body["filelist_from"]) == (RECORD, 10, 4)
        assert got_sig.getvalue() == sig[10:] and got_fl.getvalue() == fl[4:]


def test_another_layout_is_read_with_json(tmp_path):
    doc = json.dumps({"filelist": base64.b64encode(b"fl").decode(), "record": RECORD, "sig_from": 0,
                      "filelist_from": 0, "signatures": base64.b64encode(b"sig").decode()}, indent=1).encode()
    got_sig, got_fl = io.BytesIO(), io.BytesIO()
    assert resume.read_segment(io.BytesIO(doc), got_sig, got_fl)["record"] == RECORD
    assert (got_sig.getvalue(), got_fl.getvalue()) == (b"sig", b"fl")


@pytest.mark.parametrize("damage", ["cut", "no filelist", "not base64", "trailing", "not json"])
def test_damaged_segments_are_value_errors(tmp_path, damage):
    sig_path, fl_path = files(tmp_path, b"s" * 5000, b"f" * 300)
    out = io.BytesIO()
    resume.write_segment(out, RECORD, 0, 0, (sig_path, 0, 5000), (fl_path, 0, 300))
    doc = out.getvalue()
    doc = {"cut": doc[:len(doc) // 2], "no filelist": doc[:doc.index(b'", "filelist"') + 1] + b"}",
           "not base64": doc.replace(b"c3Nz", b"c3N!", 1), "trailing": doc + b"x",
           "not json": b"{" + doc}[damage]
    with pytest.raises(ValueError):
        resume.read_segment(io.BytesIO(doc), io.BytesIO(), io.BytesIO())


def test_a_big_segment_takes_little_memory(tmp_path):
    """200 MB of signatures at the first checkpoint took about 500 MB to upload: read whole,
    base64 and JSON copies of it. Now a few pieces of _B64_PIECE."""
    sig_path = str(tmp_path / "sig")
    with open(sig_path, "wb") as f:
        for _n in range(40):
            f.write(os.urandom(1 << 20))
    fl_path = str(tmp_path / "fl")
    with open(fl_path, "wb") as f:
        f.write(b"x" * 1000)
    doc = str(tmp_path / "doc")
    tracemalloc.start()
    try:
        with open(doc, "wb") as f:
            resume.write_segment(f, RECORD, 0, 0, (sig_path, 0, 40 << 20), (fl_path, 0, 1000))
        written_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        with open(doc, "rb") as f, open(tmp_path / "sig2", "wb") as sig2, open(tmp_path / "fl2", "wb") as fl2:
            resume.read_segment(f, sig2, fl2)
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written_peak < 16 << 20, written_peak
    assert read_peak < 16 << 20, read_peak
    assert (tmp_path / "sig2").read_bytes() == open(sig_path, "rb").read()
