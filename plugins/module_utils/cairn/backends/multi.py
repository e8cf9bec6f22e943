# SPDX-License-Identifier: GPL-3.0-or-later
"""Several targets as one: ``mirror`` (every file to every target) or ``stripe`` (round robin).

Reads duplicity's ``multi:///path/config.json?mode=mirror&onfail=abort`` form: the config is a
JSON list of ``{"url": ..., "env": [{"name": ..., "value": ...}]}``. As in duplicity the mode
defaults to ``stripe`` and onfail to ``continue`` for multi:// URLs.

cairn's own mirror list (``--mirror``, a module's list of targets, a job's targets) is ``mirror``
+ ``lag``: the first target is the primary, the others mirrors. Every write goes to the primary
and to every mirror that is not lagging. A mirror that fails an operation (down, full, refusing
credentials) is marked lagging for the rest of the run: nothing more is sent to it, the run goes
on with the others and ends with ExitCode.MIRROR_LAGGING naming it (``lagging_targets()``); the
next backup copies the sets it lacks from the primary before it starts (replicate.catch_up). The
primary failing fails the run, unless ``stand_in``: then the first healthy mirror takes the
primary's place and the primary is the lagging one. Listing, sizes and the lock survey read the
primary only, so a mirror never hides that the primary lost a file.
"""
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, unquote

from ..errors import BackendError, BackendNotFound, UserError
from ..redact import is_secret_name, redact_text, redact_url, url_secrets
from .base import Backend, split_url

log = logging.getLogger("cairn")


class MultiBackend(Backend):
    def __init__(self, backends, mode="mirror", onfail="abort", stand_in=False):
        if mode not in ("mirror", "stripe"):
            raise UserError(f"multi backend mode must be mirror or stripe, not {mode!r}")
        if onfail not in ("abort", "continue", "lag") or (onfail == "lag" and mode != "mirror"):
            raise UserError(f"multi backend onfail must be abort or continue, not {onfail!r}")
        self.backends = list(backends)
        self.mode = mode
        self.onfail = onfail
        self.stand_in = stand_in
        self.primary = 0            # lag mode: the index of the target that answers list and size
        self.lagging = {}           # lag mode: index -> why (redacted), in the order they fell behind
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

    # --- lag mode (cairn's --mirror): see the module docstring ------------------------------

    @property
    def lags(self):
        return self.onfail == "lag"

    def healthy(self):
        """(index, backend) of the primary and of every mirror not lagging, the primary first."""
        with self._lock:
            return [(self.primary, self.backends[self.primary])] + [
                (i, b) for i, b in enumerate(self.backends) if i != self.primary and i not in self.lagging]

    def mark_lagging(self, index, error):
        """Send nothing more to mirror ``index`` in this run; ``error`` says why."""
        text = redact_text(getattr(error, "message", None) or str(error) or type(error).__name__)
        with self._lock:
            if index in self.lagging or index == self.primary:
                return
            self.lagging[index] = text
        log.warning("%s: %s; this target is lagging: nothing more is sent to it in this run, the next "
                    "run copies what it lacks", redact_url(self.backends[index].url), text)

    def lagging_targets(self):
        """[{url (redacted), error, index}] of the targets that fell behind in this run; ``index``:
        0 the primary, 1 the first mirror ..."""
        with self._lock:
            return [{"url": redact_url(self.backends[i].url), "error": e, "index": i} for i, e in self.lagging.items()]

    def _primary_failed(self, index, error):
        """The primary ``index`` failed with ``error``: raise it, unless a mirror may stand in."""
        with self._lock:
            if index != self.primary:        # another thread already handed over
                return
            spare = [i for i in range(len(self.backends)) if i != index and i not in self.lagging]
            if not self.stand_in or not spare:
                raise BackendError(f"{redact_url(self.backends[index].url)}: {error.message}", error.exit_code)
            self.primary = spare[0]
            self.lagging[index] = redact_text(error.message)
        log.warning("%s: %s; the primary target is lagging, %s stands in for it", redact_url(self.backends[index].url),
                    redact_text(error.message), redact_url(self.backends[self.primary].url))

    def _on_primary(self, method, *args):
        while True:
            index = self.primary
            try:
                return getattr(self.backends[index], method)(*args)
            except BackendError as e:
                self._primary_failed(index, e)

    def _on_all(self, method, *args):
        """``method`` on the primary and every healthy mirror at once: the primary's answer, a
        mirror's failure marks it lagging, the primary's fails the call (or hands over)."""
        while True:
            index = self.primary
            futures = [(i, self.pool.submit(getattr(b, method), *args)) for i, b in self.healthy()]
            results, failed = {}, None
            for i, f in futures:
                try:
                    results[i] = f.result()
                except BackendError as e:
                    if i == index:
                        failed = e
                    else:
                        self.mark_lagging(i, e)
            if failed is None:
                return results.get(index)
            self._primary_failed(index, failed)
            if self.primary in results:      # the stand-in has done it already
                return results[self.primary]

    def size(self, name):
        if self.lags:
            return self._on_primary("size", name)
        return super().size(name)

    def list(self):
        if self.lags:
            return self._on_primary("list")
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
        for _i, b in (self.healthy() if self.lags else enumerate(self.backends)):
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
        if self.lags:
            return self._on_all("put", local_path, name)
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
        if self.lags:
            return self._on_all("delete", names)
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
        if self.lags:
            return self._on_all("rename", old, new)
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
