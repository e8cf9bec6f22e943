# SPDX-License-Identifier: GPL-3.0-or-later
"""How gpg's results are judged, with python-gnupg result stand-ins."""
from types import SimpleNamespace

import pytest

from cairn.crypto import _check_local_write
from cairn.errors import ExitCode, LocalIOError


def test_good_decryption_with_a_write_error_is_a_local_disk_error():
    r = SimpleNamespace(ok=True, returncode=2,
                        stderr="[GNUPG:] DECRYPTION_OKAY\ngpg: error writing to '/tmp/x.tar': No space left on device\n")
    with pytest.raises(LocalIOError) as e:
        _check_local_write(r, "/tmp/x.tar")
    assert e.value.exit_code == ExitCode.LOCAL_IO == 62
    assert "No space left on device" in e.value.message and "/tmp/x.tar" in e.value.message


@pytest.mark.parametrize("returncode,stderr", [
    (2, "[GNUPG:] DECRYPTION_OKAY\ngpg: Can't check signature: No public key\n"),   # output complete
    (0, "gpg: encrypted with 1 passphrase\n"),
    (None, "gpg: error writing: No space left on device\n"),   # a python-gnupg without returncode
])
def test_other_results_are_left_to_the_usual_checks(returncode, stderr):
    _check_local_write(SimpleNamespace(ok=True, returncode=returncode, stderr=stderr), "/tmp/x")
