# SPDX-License-Identifier: GPL-3.0-or-later
"""Several targets as one: ``mirror`` (every file to every target) or ``stripe`` (round robin).

Reads duplicity's ``multi:///path/config.json?mode=mirror&onfail=abort`` form: the config is a
JSON list of ``{"url": ..., "env": [{"name": ..., "value": ...}]}``. As in duplicity the mode
defaults to ``stripe`` and onfail to ``continue`` for multi:// URLs; cairn's own mirror list
(``--mirror``, a module's list of targets) is ``mirror`` + ``abort``: a run succeeds only when
every target has every file, so no copy silently falls behind.
"""
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, unquote

from ..errors import BackendError, BackendNotFound, UserError
from ..redact import is_secret_name, redact_url, url_secrets
from .base import Backend, split_url

log = logging.getLogger("cairn")


class MultiBackend(Backend):
    def __init__(self, backends, mode="mirror", onfail="abort"):
        if mode not in ("mirror", "stripe"):
            raise UserError(f"multi backend mode must be mirror or stripe, not {mode!r}")
        if onfail not in ("abort", "continue"):
            raise UserError(f"multi backend onfail must be abort or continue, not {onfail!r}")
        self.backends = list(backends)
        self.mode = mode
        self.onfail = onfail
        # a display string, not a URL to open: redacted once here
        self.url = " + ".join(redact_url(b.url) for b in self.backends)
        self._next = 0
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=len(self.backends), thread_name_prefix="cairn-multi")

    @property
    def throttle(self):
        return None

    @throttle.setter
    def throttle(self, value):
        for b in self.backends:
            b.throttle = value

    def list(self):
        names = set()
        failures = []
        for b in self.backends:
            try:
                names.update(b.list())
            except BackendError as e:
                if self.onfail == "abort":
                    raise
                failures.append(e)
        if failures and len(failures) == len(self.backends):
            raise failures[0]
        return list(names)

    def get(self, name, local_path):
        last = None
        for b in self.backends:
            try:
                return b.get(name, local_path)
            except BackendError as e:      # another copy may be fine
                log.warning("%s: %s; trying the next target", redact_url(b.url), e)
                last = e
        raise last or BackendNotFound(f"{name} is on none of the targets")

    def put(self, local_path, name):
        if self.mode == "stripe":
            with self._lock:
                order = self.backends[self._next:] + self.backends[:self._next]
                self._next = (self._next + 1) % len(self.backends)
            last = None
            for b in order:
                try:
                    return b.put(local_path, name)
                except BackendError as e:
                    if self.onfail == "abort":
                        raise
                    log.warning("%s: %s; trying the next target", redact_url(b.url), e)
                    last = e
            raise last
        futures = [(b, self.pool.submit(b.put, local_path, name)) for b in self.backends]
        errors = []
        for b, f in futures:
            try:
                f.result()
            except BackendError as e:
                errors.append((b, e))
        if errors and (self.onfail == "abort" or len(errors) == len(self.backends)):
            b, e = errors[0]
            raise BackendError(f"{redact_url(b.url)}: {e.message}", e.exit_code)
        for b, e in errors:
            log.warning("%s: %s; the other targets have %s", redact_url(b.url), e, name)

    def delete(self, names):
        names = list(names)
        errors, kept = [], {}
        for b in self.backends:
            try:
                for k in b.delete(names) or ():
                    kept.setdefault(k["name"], k)
            except BackendError as e:
                errors.append(e)
        if errors and (self.onfail == "abort" or len(errors) == len(self.backends)):
            raise errors[0]
        return [kept[n] for n in sorted(kept)] or None

    def held(self, names):
        """Kept by any of the targets (S3 Object Lock on one of them)."""
        out = {}
        for b in self.backends:
            for name, info in b.held(names).items():
                out.setdefault(name, info)
        return out

    def rename(self, old, new):
        """Mirrors: on every target; stripes: on the one that holds ``old``."""
        found, errors = False, []
        for b in self.backends:
            try:
                b.rename(old, new)
                found = True
            except BackendNotFound:
                continue
            except BackendError as e:
                errors.append((b, e))
        if errors and (self.onfail == "abort" or not found):
            b, e = errors[0]
            raise BackendError(f"{redact_url(b.url)}: {e.message}", e.exit_code)
        if not found and not errors:
            raise BackendNotFound(f"{old} is on none of the targets")
        for b, e in errors:
            log.warning("%s: %s; the other targets have %s", redact_url(b.url), e, new)

    def local_path(self, name):
        return None

    def close(self):
        self.pool.shutdown(wait=True)
        for b in self.backends:
            b.close()


def _read_config(url):
    """(path, mode, onfail, entries): each entry a (url, {name: value}) of the config's list."""
    parts = split_url(url, "multi target", check_port=False)
    path = unquote(parts.path)
    query = parse_qs(parts.query)
    mode = query.get("mode", ["stripe"])[0]
    onfail = query.get("onfail", ["continue"])[0]
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except OSError as e:
        raise UserError(f"cannot read the multi backend config {path}: {e.strerror}") from None
    except ValueError as e:   # the position only: the text may hold a password
        where = f" (line {e.lineno}, column {e.colno})" if hasattr(e, "lineno") else ""
        raise UserError(f"the multi backend config {path} is not valid JSON{where}") from None
    if not isinstance(config, list) or not config:
        raise UserError(f"the multi backend config {path} must be a non-empty JSON list of targets")
    entries = []
    for entry in config:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise UserError(f"each entry of {path} needs a \"url\" string")
        env = {}
        items = entry.get("env", [])
        for item in items if isinstance(items, list) else [None]:
            if not (isinstance(item, dict) and isinstance(item.get("name"), str)
                    and isinstance(item.get("value"), str)):
                raise UserError(f"each \"env\" item in {path} needs a \"name\" and a \"value\" string")
            env[item["name"]] = item["value"]
        entries.append((entry["url"], env))
    return path, mode, onfail, entries


def config_secrets(url):
    """The passwords of a multi:// config's URLs and its credential env values, for a front
    end's redaction (nothing when the config cannot be read: opening it says why)."""
    try:
        _path, _mode, _onfail, entries = _read_config(url)
    except UserError:
        return []
    out = []
    for entry_url, env in entries:
        out += url_secrets(entry_url)
        for name, value in env.items():
            if is_secret_name(name):
                out.append(value)
            out += url_secrets(value)
    return out


def from_url(url, options):
    """``multi:///path/to/config.json?mode=mirror&onfail=abort`` as duplicity reads it."""
    from dataclasses import replace

    from . import open_raw           # late: the registry imports this module lazily
    from .transfer import RetryingBackend
    _path, mode, onfail, entries = _read_config(url)
    backends = []
    for entry_url, entry_env in entries:
        sub = replace(options, env={**options.env, **entry_env})
        backends.append(RetryingBackend(open_raw(entry_url, sub), sub))
    return MultiBackend(backends, mode=mode, onfail=onfail)
