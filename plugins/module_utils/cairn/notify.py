# SPDX-License-Identifier: GPL-3.0-or-later
"""A job's mail and pings (what `cairn run-job` sends when a run ends).

Mail goes through the host's sendmail (`sendmail -t -oi`, the seed scripts' way) or, when the job
names ``smtp_host``, straight to that relay with STARTTLS; the relay's password comes from the
job's environment (``CAIRN_SMTP_PASSWORD`` in its 0600 credentials file), never from its config.
Pings are healthchecks.io-style: POST (or GET) to a URL, ``<url>/start`` at the start and
``<url>/<exit code>`` at the end. Nothing here raises: a run's result never depends on whether
its report got through; the caller logs the returned error (already redacted by the caller).
"""
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit, urlunsplit

MAIL_ON = ("failure", "verify_failure", "success")
DEFAULT_MAIL_ON = ("failure", "verify_failure")
SMTP_PASSWORD_ENV = "CAIRN_SMTP_PASSWORD"
# where sendmail lives when PATH (cron's, systemd's) lacks it
SENDMAIL_DIRS = ("/usr/sbin", "/usr/lib", "/usr/local/sbin")


def check_config(config):
    """The mail and ping keys of a job config: a list of problems (empty: fine)."""
    problems = []
    mail_on = config.get("mail_on")
    if mail_on is not None and (not isinstance(mail_on, list) or not set(mail_on) <= set(MAIL_ON)):
        problems.append(f"mail_on must be a list of {', '.join(MAIL_ON)}")
    mail_to = config.get("mail_to")
    if mail_to is not None and (not isinstance(mail_to, list) or not all(isinstance(a, str) and "@" in a
                                                                         for a in mail_to)):
        problems.append("mail_to must be a list of mail addresses")
    if (config.get("ping_method") or "POST").upper() not in ("GET", "POST"):
        problems.append("ping_method must be GET or POST")
    port = config.get("smtp_port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        problems.append("smtp_port must be a port number")
    return problems


def build_mail(config, subject, body):
    msg = EmailMessage()
    host = socket.getfqdn()
    msg["From"] = config.get("mail_from") or f"cairn@{host}"
    msg["To"] = ", ".join(config["mail_to"])
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=host)
    msg["Auto-Submitted"] = "auto-generated"      # RFC 3834: no vacation replies to a robot
    msg.set_content(body)
    return msg


def send_mail(config, env, msg, timeout=60):
    """Send ``msg``; return None, or the error text (for the caller to redact and log)."""
    try:
        if config.get("smtp_host"):
            _smtp(config, env, msg, timeout)
        else:
            _sendmail(env, msg, timeout)
    except Exception as e:   # noqa: BLE001 - a failed mail must not fail or hide the run's result
        return f"{type(e).__name__}: {e}"
    return None


def _sendmail(env, msg, timeout):
    path = env.get("PATH", os.defpath) + os.pathsep + os.pathsep.join(SENDMAIL_DIRS)
    sendmail = shutil.which("sendmail", path=path)
    if not sendmail:
        raise OSError("no sendmail on this host (install an MTA, or give the job smtp_host)")
    r = subprocess.run([sendmail, "-t", "-oi"], input=msg.as_bytes(), env=env, capture_output=True,
                       timeout=timeout, check=False)
    if r.returncode != 0:
        raise OSError(f"sendmail exited with {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}")


def _smtp(config, env, msg, timeout):
    context = ssl.create_default_context(cafile=config.get("smtp_ca_file") or None)
    with smtplib.SMTP(config["smtp_host"], int(config.get("smtp_port") or 587), timeout=timeout) as s:
        s.ehlo()
        if config.get("smtp_starttls", True):
            s.starttls(context=context)
            s.ehlo()
        if config.get("smtp_user"):
            password = env.get(SMTP_PASSWORD_ENV)
            if not password:
                raise ValueError(f"smtp_user is set but {SMTP_PASSWORD_ENV} is not in the job's credentials")
            s.login(config["smtp_user"], password)
        s.send_message(msg)


def ping_url(url, suffix):
    """``url`` with ``/suffix`` appended to its path (its query kept): healthchecks.io's
    ``<ping URL>/start`` and ``<ping URL>/<exit status>``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + suffix))


def ping(url, body, method="POST", timeout=10):
    """GET or POST ``body`` to ``url``; return None, or the error (for the caller to log)."""
    try:
        data = body.encode() if method.upper() == "POST" else None
        req = urllib.request.Request(url, data=data, method=method.upper(),
                                     headers={"Content-Type": "text/plain", "User-Agent": "cairn-job"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:   # noqa: S310 - the admin's URL
            resp.read(1024)
    except Exception as e:   # noqa: BLE001 - a failed ping must not fail or hide the run's result
        return e
    return None


__all__ = ["DEFAULT_MAIL_ON", "MAIL_ON", "SMTP_PASSWORD_ENV", "build_mail", "check_config", "ping", "ping_url",
           "send_mail"]
