# SPDX-License-Identifier: GPL-3.0-or-later
"""--s3-object-lock-mode / --s3-object-lock-days through the one options builder, and which
names get retention (no server needed)."""
import pytest

from cairn import options
from cairn.backends.s3 import scaffolding
from cairn.errors import ExitCode, UserError


def _backend(**m):
    return options.target_options(dict(target="s3://b/p", no_encryption=True, **m), {}).backend


def test_both_given():
    b = _backend(s3_object_lock_mode="Compliance", s3_object_lock_days="30")
    assert (b.s3_object_lock_mode, b.s3_object_lock_days) == ("compliance", 30)
    b = _backend()
    assert (b.s3_object_lock_mode, b.s3_object_lock_days) == (None, None)


@pytest.mark.parametrize("m, text", [
    (dict(s3_object_lock_mode="governance"), "not only the mode"),
    (dict(s3_object_lock_days=7), "not only the days"),
    (dict(s3_object_lock_mode="governance", s3_object_lock_days=0), "positive"),
    (dict(s3_object_lock_mode="governance", s3_object_lock_days=-3), "positive"),
    (dict(s3_object_lock_mode="governance", s3_object_lock_days="x"), "positive"),
    (dict(s3_object_lock_mode="governance", s3_object_lock_days=True), "positive"),
    (dict(s3_object_lock_mode="legal-hold", s3_object_lock_days=7), "governance or compliance"),
])
def test_bad_combinations_are_usage_errors(m, text):
    with pytest.raises(UserError) as e:
        _backend(**m)
    assert e.value.exit_code == ExitCode.USER_ERROR == 23
    assert text in e.value.message


def test_scaffolding_gets_no_retention():
    assert scaffolding("cairn-lock.0123abcd.json") and scaffolding("web1-cairn-lock.00ff.json")
    assert scaffolding("cairn-unfinished.duplicity-full.20260101T000000Z.vol1.difftar.gpg")
    assert scaffolding(".cairn-tmp.duplicity-full.20260101T000000Z.manifest")
    assert not scaffolding("duplicity-full.20260101T000000Z.vol1.difftar.gpg")
    assert not scaffolding("duplicity-full-signatures.20260101T000000Z.sigtar.gpg")
