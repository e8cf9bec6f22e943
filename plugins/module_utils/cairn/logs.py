# SPDX-License-Identifier: GPL-3.0-or-later
"""Logging as cairn's front ends set it up (the CLI, run-job, the modules); importing an engine
module changes no logger.

cairn's own messages go to the "cairn" logger. The libraries it drives are kept below their
chatter: the SDKs log every request's URL and headers at INFO, paramiko its handshakes, and
python-gnupg warns about every non-zero gpg exit (and logs a traceback when gpg goes away under
an interrupted run) where the crypto layer already turns each failure into one message.
"""
import logging

LIBRARY_LEVELS = {
    "gnupg": logging.CRITICAL,
    "paramiko": logging.WARNING,
    "boto3": logging.WARNING, "botocore": logging.WARNING, "s3transfer": logging.WARNING,
    "azure": logging.WARNING, "azure.core.pipeline.policies.http_logging_policy": logging.WARNING,
    "azure.storage": logging.WARNING,
    "urllib3": logging.WARNING,
}


def quiet_libraries():
    for name, level in LIBRARY_LEVELS.items():
        logging.getLogger(name).setLevel(level)
