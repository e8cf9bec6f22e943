# SPDX-License-Identifier: GPL-3.0-or-later
"""`cairn duply-import PROFILE_DIR [--name NAME]`: a duply profile as a `cairn_jobs` entry.

A duply profile is a directory with a ``conf`` (a bash file of assignments), an ``exclude``
filelist and optional ``pre``/``post`` scripts. The conf is read here without a shell: only
assignments are understood (``VAR='x'``, ``VAR="x $OTHER"``, ``VAR=x``, ``VAR+=x``, ``export``,
comments; ``$VAR``/``${VAR}`` of earlier variables or of the environment). Anything else (command
substitution, conditionals, arrays, parameter operators) is refused, naming the line, because its
value cannot be known without running it.

The entry is printed on stdout as YAML. Secrets (GPG_PW, GPG_PW_SIGN, TARGET_PASS, a password in
TARGET, exported keys) are never printed: the entry references vault variables, and stderr names
the variables the user must put into the vault, with notes on what changes. Exit status: 0, or
23 (ExitCode.USER_ERROR) for a missing profile, a conf that cannot be evaluated or bad options.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from urllib.parse import quote, unquote

from .errors import ExitCode, UserError

# the placeholders of duply's conf template: still there means "not configured" to duply
DEFAULT_GPG_KEY = "_KEY_ID_"
DEFAULT_GPG_PW = "_GPG_PASSWORD_"
DEFAULT_TARGET = "scheme://user[:password]@host[:port]/[/]path"
DEFAULT_SOURCE = "/path/of/source"

# the variables of duply's conf: unset ones expand to nothing (never taken from the environment)
CONF_VARS = ("GPG_KEY", "GPG_PW", "GPG_KEYS_ENC", "GPG_KEY_SIGN", "GPG_PW_SIGN", "GPG", "GPG_OPTS", "GPG_TEST",
             "GPG_IMPORT", "GPG_EXPORT", "TARGET", "TARGET_USER", "TARGET_PASS", "TARGET_PW", "SOURCE",
             "DUPL_PRECMD", "PYTHON", "FILENAME", "MAX_AGE", "MAX_FULL_BACKUPS", "MAX_FULLS_WITH_INCRS",
             "MAX_FULLBKP_AGE", "VOLSIZE", "VERBOSITY", "TEMP_DIR", "ARCH_DIR", "DUPL_PARAMS")
# names whose values are credentials: the vault gets them, the output only a reference
SECRET_VARS = ("GPG_PW", "GPG_PW_SIGN", "TARGET_PASS", "TARGET_PW")
_SECRET_NAME = re.compile(r"(?i)pass|secret|token|key|signature|credential|connection_string")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN = re.compile(r"(export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)(\+?=)")
_EXPORT_ONLY = re.compile(r"export((?:[ \t]+[A-Za-z_][A-Za-z0-9_]*)+)[ \t]*(?=#|;|\n|$)")
# target schemes whose credentials are environment variables, not the URL's user and password
_S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
_CREDENTIALS_BY_ENV = {"s3": _S3_ENV, "boto3+s3": _S3_ENV, "s3+http": _S3_ENV,
                       "gs": ("GS_ACCESS_KEY_ID", "GS_SECRET_ACCESS_KEY"),
                       "azure": ("AZURE_ACCOUNT_NAME", "AZURE_ACCOUNT_KEY")}
_JOB_NAME = re.compile(r"[A-Za-z0-9._-]+")
# variables duply itself sets before it sources the conf
_DUPLY_VARS = ("CONFDIR", "PROFILE", "CONF", "PRE", "POST", "EXCLUDE", "KEYFILE")
# conf variables duply reads that a cairn job has no use for, and why
_NOT_CARRIED = {
    "DUPL_PRECMD": "a command wrapping duplicity (e.g. trickle) is not run; cairn has its own rate limit options",
    "PYTHON": "cairn runs with its own interpreter",
    "GPG": "cairn uses the gpg on PATH",
    "GPG_TEST": "cairn does not run duply's preliminary gpg test",
    "GPG_IMPORT": "keys come from the cairn.backup.keys role",
    "GPG_EXPORT": "keys come from the cairn.backup.keys role",
    "FILENAME": "only used through DUPL_PARAMS (carried there)",
}


class ConfError(UserError):
    """A duply conf that cannot be read without running it (exit 23)."""


# --- the conf: bash assignments, evaluated without a shell -------------------------------------

class _Lexer:
    def __init__(self, text, environ):
        self.text = text
        self.pos = 0
        self.environ = environ
        self.values = {}
        self.exported = []
        self.from_environment = set()

    def line_no(self, pos=None):
        return self.text.count("\n", 0, self.pos if pos is None else pos) + 1

    def refuse(self, why, start, name=None):
        line = self.line_no(start)
        text = self.text.splitlines()[line - 1].strip() if self.text.splitlines() else ""
        # never show a line that may hold a secret
        shown = "" if (name and _is_secret_name(name)) or _SECRET_NAME.search(text) else f": {text}"
        raise ConfError(f"conf line {line}{shown}: {why}; cairn evaluates only plain assignments "
                        "(edit the line, or set the value in the job entry by hand)")

    def parse(self):
        t = self.text
        while self.pos < len(t):
            c = t[self.pos]
            if c in " \t\n;":
                self.pos += 1
            elif c == "#":
                end = t.find("\n", self.pos)
                self.pos = len(t) if end < 0 else end
            elif t.startswith("\\\n", self.pos):
                self.pos += 2
            else:
                self.statement()
        return self.values

    def statement(self):
        start = self.pos
        m = _ASSIGN.match(self.text, self.pos)
        if not m:
            e = _EXPORT_ONLY.match(self.text, self.pos)
            if e:
                for name in e.group(1).split():
                    if name not in self.exported:
                        self.exported.append(name)
                self.pos = e.end()
                return
            self.refuse("not an assignment (commands, conditionals and functions are not evaluated)", start)
        name = m.group(2)
        self.pos = m.end()
        if self.text.startswith("(", self.pos):
            self.refuse(f"{name} is an array", start, name)
        value = self.word(start, name)
        # after the word: end of line, a comment or ';' - a command after it would run with it
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1
        if self.pos < len(self.text) and self.text[self.pos] not in "\n#;":
            self.refuse(f"something follows the value of {name}", start, name)
        self.values[name] = (self.values.get(name, "") + value) if m.group(3) == "+=" else value
        if m.group(1) and name not in self.exported:
            self.exported.append(name)

    def word(self, start, name):
        t, out = self.text, []
        while self.pos < len(t):
            c = t[self.pos]
            if c in " \t\n;":
                break
            if c == "'":
                end = t.find("'", self.pos + 1)
                if end < 0:
                    self.refuse(f"unterminated single quote in {name}", start, name)
                out.append(t[self.pos + 1:end])
                self.pos = end + 1
            elif c == '"':
                self.pos += 1
                while True:
                    if self.pos >= len(t):
                        self.refuse(f"unterminated double quote in {name}", start, name)
                    c = t[self.pos]
                    if c == '"':
                        self.pos += 1
                        break
                    if c == "\\" and self.pos + 1 < len(t) and t[self.pos + 1] in '$`"\\\n':
                        if t[self.pos + 1] != "\n":
                            out.append(t[self.pos + 1])
                        self.pos += 2
                    elif c == "$":
                        out.append(self.expand(start, name))
                    elif c == "`":
                        self.refuse(f"command substitution in {name}", start, name)
                    else:
                        out.append(c)
                        self.pos += 1
            elif c == "\\":
                if self.pos + 1 < len(t) and t[self.pos + 1] != "\n":
                    out.append(t[self.pos + 1])
                self.pos += 2
            elif c == "$":
                out.append(self.expand(start, name))
            elif c == "~" and not out and t[self.pos + 1:self.pos + 2] in ("/", "", " ", "\t", "\n", ";"):
                out.append(self.lookup("HOME", start, name))
                self.pos += 1
            elif c in "`|&<>()":
                self.refuse(f"shell syntax {c!r} in the value of {name}", start, name)
            else:
                out.append(c)
                self.pos += 1
        return "".join(out)

    def expand(self, start, name):
        t = self.text
        if t.startswith("${", self.pos):
            end = t.find("}", self.pos)
            ref = t[self.pos + 2:end] if end > 0 else ""
            if not _NAME.fullmatch(ref):
                self.refuse(f"parameter expansion ${{{ref}...}} in {name} (only $VAR and ${{VAR}})", start, name)
            self.pos = end + 1
            return self.lookup(ref, start, name)
        m = _NAME.match(t, self.pos + 1)
        if m:
            self.pos = m.end()
            return self.lookup(m.group(), start, name)
        nxt = t[self.pos + 1:self.pos + 2]
        if nxt in ("", " ", "\t", "\n", '"'):
            self.pos += 1
            return "$"
        self.refuse(f"${nxt}... in {name} (command substitution, arithmetic or special parameters)", start, name)
        return ""

    def lookup(self, ref, start, name):
        if ref in self.values:
            return self.values[ref]
        if ref == name or ref in CONF_VARS:     # VAR="$VAR more": unset is empty, as in bash
            return ""
        if ref in self.environ:
            self.from_environment.add(ref)
            return self.environ[ref]
        self.refuse(f"{name} refers to ${ref}, which neither the conf nor the environment sets", start, name)
        return ""


def parse_conf(text, environ=None):
    """({variable: value} after evaluating the assignments, [exported names], {names taken from the
    environment}). Raises ConfError naming the line of anything that is not a plain assignment."""
    lexer = _Lexer(text, dict(os.environ if environ is None else environ))
    values = lexer.parse()
    return values, lexer.exported, lexer.from_environment


def _is_secret_name(name):
    return name in SECRET_VARS or bool(_SECRET_NAME.search(name))


# --- the exclude file ---------------------------------------------------------------------------

def selection_from_exclude(text):
    """The lines of a duply exclude file (an --exclude-filelist) as an ordered `selection` list:
    comments and blank lines dropped, a line without a sign made an explicit '- ' (that is what it
    means in an exclude filelist), order kept (first match wins)."""
    out = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith(("+ ", "- ")):
            line = "- " + line
        out.append(line)
    return out


# --- the mapping --------------------------------------------------------------------------------

def _split_keys(value):
    """duply's key list: comma separated, '\\,' an escaped comma."""
    parts = re.split(r"(?<!\\),", value or "")
    return [p.replace("\\,", ",").strip() for p in parts if p.strip()]


def _split_target(target):
    """duply's own split: (scheme://, user, password, host/path); creds up to the first '@'."""
    m = re.match(r"([^/:]+)://", target)
    prot, rest = (m.group(0), target[m.end():]) if m else ("", target)
    user = password = None
    c = re.match(r"[^@]*@", rest)
    if c:
        creds, rest = rest[:c.end() - 1], rest[c.end():]
        user, _sep, pw = creds.partition(":")
        user = unquote(user) or None
        password = unquote(pw) if pw else None
    return prot, user, password, rest


def _has_secret_key_in_keyring(key_id, gpg_opts=""):
    """Whether gpg (as the importing user) has the secret key, as duply checks to sign by default."""
    try:
        r = subprocess.run(["gpg", "--batch", *shlex.split(gpg_opts), "--list-secret-keys", key_id],
                           capture_output=True, check=False, timeout=30)
    except (OSError, ValueError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def vault_name(job, what):
    return "vault_cairn_" + re.sub(r"[^A-Za-z0-9_]", "_", f"{job}_{what}").lower()


class Imported:
    """The result: ``entry`` (the cairn_jobs item), ``secrets`` ([(vault variable, what)]) and
    ``notes`` (what changes or is left out, for stderr)."""

    def __init__(self):
        self.entry = {}
        self.secrets = []
        self.notes = []
        self.profile_dir = None
        self.scripts = {}           # "pre"/"post": the profile's script the hook runs a copy of
        self._values = {}           # vault variable -> the secret itself (for credentials_env only)

    def vault(self, job, what, source, value):
        var = vault_name(job, what)
        self.secrets.append((var, source))
        self._values[var] = value
        return "{{ " + var + " }}"

    def credentials_env(self):
        """The job's credentials as the job role would write them: the entry's env with its vault
        references resolved, PASSPHRASE and SIGN_PASSPHRASE. Holds secrets: never print it."""
        def value(v):
            m = re.fullmatch(r"\{\{ (vault_cairn_[a-z0-9_]+) \}\}", v) if isinstance(v, str) else None
            return self._values[m.group(1)] if m and m.group(1) in self._values else v
        env = {k: value(v) for k, v in self.entry.get("env", {}).items()}
        for key, var in (("passphrase", "PASSPHRASE"), ("sign_passphrase", "SIGN_PASSPHRASE")):
            if key in self.entry:
                env[var] = value(self.entry[key])
        return env


def import_profile(profile_dir, name=None, environ=None, has_secret_key=None, hook_dir=None):
    """Read a duply profile directory; return an Imported (raises UserError / ConfError).
    hook_dir: the hooks run copies of the pre/post scripts there (DIR/pre, DIR/post), made by the
    job role when it adopts the profile, instead of the profile's own files."""
    if not os.path.isdir(profile_dir):
        raise UserError(f"duply profile {profile_dir!r} is not a directory (give the profile's folder, "
                        "e.g. /etc/duply/NAME or ~/.duply/NAME)")
    confdir = os.path.realpath(profile_dir)
    profile = os.path.basename(confdir)
    conf_path = os.path.join(confdir, "conf")
    try:
        with open(conf_path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UserError(f"cannot read the duply conf {conf_path}: {e.strerror or e}") from e
    environ = dict(os.environ if environ is None else environ)
    duply_env = {"CONFDIR": confdir, "PROFILE": profile, "CONF": conf_path,
                 "PRE": os.path.join(confdir, "pre"), "POST": os.path.join(confdir, "post"),
                 "EXCLUDE": os.path.join(confdir, "exclude"), "KEYFILE": os.path.join(confdir, "gpgkey.asc")}
    v, exported, from_env = parse_conf(text, {**environ, **duply_env})
    job = name or profile
    if not _JOB_NAME.fullmatch(job):
        raise UserError(f"profile name {job!r} is not a valid job name (letters, digits, '.', '_', '-'): "
                        "give one with --name")
    out = Imported()
    out.profile_dir = confdir
    e = out.entry
    e["name"] = job
    for ref in sorted(from_env - set(_DUPLY_VARS)):
        out.notes.append(f"${ref} was taken from this environment: check that it is the same on the host")
    if "TARGET_PW" in v:                                   # duply's old name, overrides silently
        v["TARGET_PASS"] = v.pop("TARGET_PW")

    # SOURCE, TARGET, TARGET_USER, TARGET_PASS
    source = v.get("SOURCE", "")
    if not source or source == DEFAULT_SOURCE:
        raise ConfError(f"{conf_path}: SOURCE is not set (or still the template's value)")
    e["source"] = source
    target = v.get("TARGET", "")
    if not target or target == DEFAULT_TARGET:
        raise ConfError(f"{conf_path}: TARGET is not set (or still the template's value)")
    prot, url_user, url_pass, hostpath = _split_target(target)
    if not prot:
        raise ConfError(f"{conf_path}: TARGET is not a URL (scheme://..., e.g. file:///mnt/backup)")
    if "TARGET_USER" in v and url_user is not None and v["TARGET_USER"] != url_user:
        raise ConfError(f"{conf_path}: TARGET_USER and the user in TARGET differ (duply refuses this too)")
    if "TARGET_PASS" in v and url_pass is not None and v["TARGET_PASS"] != url_pass:
        raise ConfError(f"{conf_path}: TARGET_PASS and the password in TARGET differ (duply refuses this too)")
    user = v["TARGET_USER"] if "TARGET_USER" in v else url_user
    has_pass = "TARGET_PASS" in v or url_pass is not None
    scheme = prot[:-3].lower()
    pass_from = "TARGET_PASS" if "TARGET_PASS" in v else "the password in TARGET"
    env = {}
    if scheme in _CREDENTIALS_BY_ENV:
        # duplicity ignores a user and password for these (duply's bugfix 90): the backend reads
        # its credentials from the environment, and cairn refuses them in the URL
        e["target"] = prot + hostpath
        for var, given, what in zip(_CREDENTIALS_BY_ENV[scheme], (user, url_pass or v.get("TARGET_PASS")),
                                    ("TARGET_USER" if "TARGET_USER" in v else "the user in TARGET", pass_from)):
            if given is None:
                continue
            if var in exported and var in v:
                out.notes.append(f"{what} is left out: the conf exports {var}, which the backend uses")
            else:
                env[var] = out.vault(job, var, what, given) if _is_secret_name(var) else given
                out.notes.append(f"{what} becomes {var}: a {scheme}:// target takes its credentials from there")
    else:
        if user is not None and scheme != "file":
            e["target"] = f"{prot}{quote(user, safe='')}@{hostpath}"   # as duply: user in the URL
        elif url_pass is not None:
            e["target"] = prot + hostpath
        else:
            e["target"] = target
        if has_pass:                                       # as duply: the password by environment
            var = {"imap": "IMAP_PASSWORD", "imaps": "IMAP_PASSWORD", "b2": "B2_APPLICATION_KEY"}.get(
                scheme, "FTP_PASSWORD")
            env[var] = out.vault(job, "target_password", pass_from,
                                 v["TARGET_PASS"] if "TARGET_PASS" in v else url_pass)

    # exported variables: backend credentials and settings
    for ref in exported:
        if ref not in v or ref in duply_env or ref in CONF_VARS:
            continue
        if _is_secret_name(ref):
            env[ref] = out.vault(job, ref, ref, v[ref])
        else:
            env[ref] = v[ref]

    # gpg: GPG_KEY, GPG_KEYS_ENC, GPG_KEY_SIGN, GPG_PW, GPG_PW_SIGN, GPG_OPTS
    gpg_key = v.get("GPG_KEY", "")
    keys = [] if gpg_key.lower() == "disabled" else _split_keys(gpg_key) + _split_keys(v.get("GPG_KEYS_ENC"))
    disabled = gpg_key.lower() == "disabled" or (
        not (gpg_key or v.get("GPG_KEYS_ENC") or v.get("GPG_KEY_SIGN")) and "GPG_PW" not in v)
    if gpg_key == DEFAULT_GPG_KEY:
        raise ConfError(f"{conf_path}: GPG_KEY is still the template's value")
    if disabled:
        e["no_encryption"] = True
        if gpg_key.lower() != "disabled":
            out.notes.append("no GPG_KEY, GPG_KEYS_ENC, GPG_KEY_SIGN or GPG_PW: unencrypted, as duply does")
    else:
        if not keys and (not v.get("GPG_PW") or v["GPG_PW"] == DEFAULT_GPG_PW):
            raise ConfError(f"{conf_path}: symmetric encryption needs GPG_PW (unset, empty or the template's value)")
        if keys:
            e["encrypt_keys"] = keys
        sign = v.get("GPG_KEY_SIGN")
        if sign is None and keys:
            check = has_secret_key or (lambda k: _has_secret_key_in_keyring(k, v.get("GPG_OPTS", "")))
            exported_sec = os.path.exists(os.path.join(confdir, f"gpgkey.{keys[0]}.sec.asc"))
            if exported_sec or check(keys[0]):
                sign = keys[0]
                out.notes.append(f"GPG_KEY_SIGN unset: signing with {keys[0]}, whose secret key "
                                 + ("the profile holds" if exported_sec else "this keyring holds") + ", as duply would")
            else:
                out.notes.append(f"GPG_KEY_SIGN unset and no secret key of {keys[0]} here: not signing, as duply "
                                 "would not; set sign_key if the host has it")
        if sign and sign.lower() != "disabled":
            e["sign_key"] = sign
        if "GPG_PW" in v:
            e["passphrase"] = out.vault(job, "passphrase", "GPG_PW", v["GPG_PW"])
        if "GPG_PW_SIGN" in v:
            e["sign_passphrase"] = out.vault(job, "sign_passphrase", "GPG_PW_SIGN", v["GPG_PW_SIGN"])
        key_files = sorted(f for f in os.listdir(confdir) if f.startswith("gpgkey.") and f.endswith(".asc"))
        if key_files:
            out.notes.append("key files in the profile, for the cairn.backup.keys role: " + ", ".join(key_files))
    if env:
        e["env"] = env

    # DUPL_PARAMS: duply passes it through eval, i.e. split as the shell splits words
    args = []
    try:
        params = shlex.split(v.get("DUPL_PARAMS", ""))
    except ValueError as err:
        raise ConfError(f"{conf_path}: DUPL_PARAMS cannot be split into options: {err}") from err
    i = 0
    while i < len(params):
        p = params[i]
        if any(ch in p for ch in "$`"):
            raise ConfError(f"{conf_path}: DUPL_PARAMS holds {p!r}, which duply's eval would expand again")
        opt, eq, val = p.partition("=")
        if opt in ("--volsize", "--full-if-older-than"):
            if not eq:
                if i + 1 >= len(params):
                    raise ConfError(f"{conf_path}: DUPL_PARAMS ends with {opt} and no value")
                i += 1
                val = params[i]
            if opt == "--volsize":
                if not val.isdigit():
                    raise ConfError(f"{conf_path}: DUPL_PARAMS --volsize {val!r} is not a number of MB")
                e["volsize"] = int(val)
            else:
                e["full_if_older_than"] = val
        else:
            args.append(p)
        i += 1
    if "full_if_older_than" not in e:
        # duply forces no new fulls unless DUPL_PARAMS says so; the role's default (1M) would
        e["full_if_older_than"] = ""
        if v.get("MAX_FULLBKP_AGE"):
            out.notes.append("MAX_FULLBKP_AGE is set but not passed in DUPL_PARAMS, so duply never used it: "
                             "full_if_older_than stays off (set it if you meant it)")
    if "volsize" not in e and v.get("VOLSIZE"):
        # duply leaves duplicity's default (200 MB), which is the role's default too
        out.notes.append("VOLSIZE is set but not passed in DUPL_PARAMS, so duply never used it: volsize "
                         "stays duplicity's default of 200")
    if v.get("GPG_OPTS") and not disabled:
        args.append("--gpg-options=" + v["GPG_OPTS"])
    if v.get("VERBOSITY"):
        args += ["--verbosity", v["VERBOSITY"]]
    if v.get("TEMP_DIR"):
        args += ["--tempdir", v["TEMP_DIR"]]
    if v.get("ARCH_DIR"):
        # keep duply's cache: no need to download (and decrypt) the signatures again
        cache_name = profile
        if os.path.isdir(os.path.join(v["ARCH_DIR"], f"duply_{profile}")):
            cache_name = f"duply_{profile}"
        args += ["--archive-dir", v["ARCH_DIR"], "--name", cache_name]
    else:
        # duply's default: duplicity's archive dir ($XDG_CACHE_HOME or ~/.cache)/duplicity, --name duply_PROFILE.
        # Reused where it is (as for ARCH_DIR): a host with only the public key cannot decrypt the
        # signatures at the target, so it needs duply's decrypted copies to continue the chain
        cache_home = environ.get("XDG_CACHE_HOME") or (os.path.join(environ["HOME"], ".cache") if environ.get("HOME") else "")
        default_dir = os.path.join(cache_home, "duplicity") if cache_home else ""
        if default_dir and os.path.isdir(os.path.join(default_dir, f"duply_{profile}")):
            args += ["--archive-dir", default_dir, "--name", f"duply_{profile}"]
            out.notes.append(f"duply's cache {default_dir}/duply_{profile} is reused where it is (a host with only the "
                             "public key needs its signatures to continue the chain)")
        else:
            out.notes.append(f"duply's cache (~/.cache/duplicity/duply_{profile}) is not here: the job's first run "
                             f"rebuilds its cache from the target (copy duply's to <cairn_job_archive_dir>/{job} to spare "
                             "it the download; with public-key encryption the host needs the secret key for that)")
    if args:
        e["args"] = args

    # retention: duply applies it only on purge commands; the job after every backup
    retention = {}
    if v.get("MAX_AGE"):
        retention["older_than"] = v["MAX_AGE"]
    for var, key in (("MAX_FULL_BACKUPS", "keep_full"), ("MAX_FULLS_WITH_INCRS", "keep_full_with_incrementals")):
        if v.get(var):
            if not v[var].isdigit():
                raise ConfError(f"{conf_path}: {var}={v[var]!r} is not a number")
            retention[key] = int(v[var])
    if retention:
        e["retention"] = retention
        out.notes.append("MAX_AGE/MAX_FULL_BACKUPS/MAX_FULLS_WITH_INCRS become retention, applied after every "
                         "backup (duply applied them only when purge commands ran)")

    # exclude file -> ordered selection
    try:
        with open(os.path.join(confdir, "exclude"), encoding="utf-8", errors="surrogateescape") as f:
            selection = selection_from_exclude(f.read())
    except FileNotFoundError:
        selection = []
    if selection:
        e["selection"] = selection
        relative = [s for s in selection if not s[2:].lstrip("\"'").startswith(("/", "**", "ignorecase:"))]
        if relative:
            out.notes.append("relative patterns in the exclude file resolve against the working directory "
                             "(duply's: where it was started; a job's: /): " + ", ".join(relative))

    # pre/post scripts -> hooks that run them with duply's variables
    for which, hook in (("pre", "pre_hook"), ("post", "post_hook")):
        script = os.path.join(confdir, which)
        if os.path.exists(script):
            out.scripts[which] = script
            run = os.path.join(hook_dir, which) if hook_dir else script
            e[hook] = hook_command(run, which, e, v, keys, confdir, profile, prot, user, hostpath, has_pass)
    if hook_dir and out.scripts:
        out.notes.append(f"the hooks run copies of the profile's {'/'.join(sorted(out.scripts))} script(s) in "
                         f"{hook_dir} with CONFDIR={confdir}; a failing pre script now stops the backup (exit 70)")
    elif any(k in e for k in ("pre_hook", "post_hook")):
        out.notes.append("the hooks run the profile's pre/post scripts where they are: keep the profile's "
                         f"folder {confdir} on the host; a failing pre script now stops the backup (exit 70)")
    for var in sorted(set(_NOT_CARRIED) & set(v)):
        out.notes.append(f"{var} is not carried: {_NOT_CARRIED[var]}")
    return out


def hook_command(script, which, entry, v, keys, confdir, profile, prot, user, hostpath, has_pass):
    """A /bin/sh command running a duply pre/post script as duply 2.4.1 does: executable ones
    directly, others with bash, with the variables duply exports to them. Secrets come from the
    job's environment at run time (FTP_PASSWORD, PASSPHRASE), never from this text."""
    q = shlex.quote
    encrypted = not entry.get("no_encryption")
    env = [("PROFILE", q(profile)), ("CONFDIR", q(confdir)), ("SOURCE", q(entry["source"])),
           ("TARGET_URL_PROT", q(prot)), ("TARGET_URL_HOSTPATH", q(hostpath))]
    if user is not None:
        env.append(("TARGET_URL_USER", q(user)))
    if has_pass:
        env.append(("TARGET_URL_PASS", '"${FTP_PASSWORD-}"'))
    env.append(("GPG_KEYS_ENC", q("\\n".join(keys))))     # duply joins them with a literal \n
    if encrypted:
        env.append(("GPG_KEY_SIGN", q(entry.get("sign_key") or "disabled")))
    if "GPG_PW" in v:
        env.append(("GPG_PW", '"${PASSPHRASE-}"'))
    if which == "pre":
        env += [("CMD_PREV", "START"), ("CMD_NEXT", "bkp")]
        if encrypted and v.get("GPG_TEST", "").lower() != "disabled":
            env.append(("CMD_ERR", "0"))      # duply's gpg test left it there
    else:
        # duply 2.4.1 says "pre" here (its count of group markers is off by one), not "bkp";
        # CMD_ERR: the backup's exit code when run-job gives it (CAIRN_JOB_EXIT), else from the status
        env += [("CMD_PREV", "pre"), ("CMD_NEXT", "END"),
                ("CMD_ERR", '"${CAIRN_JOB_EXIT:-$([ "$CAIRN_JOB_STATUS" = success ] && echo 0 || echo 1)}"')]
    env.append(("RUN_START", '"$(date +%s%N)"'))
    assignments = " ".join(f"{k}={val}" for k, val in env)
    runner = """'if [ -x "$0" ]; then exec "$0"; fi; exec bash "$0"'"""
    return f"{assignments} /bin/sh -c {runner} {q(script)}"


# --- output -------------------------------------------------------------------------------------

_ORDER = ("name", "source", "target", "no_encryption", "encrypt_keys", "sign_key", "passphrase",
          "sign_passphrase", "env", "selection", "volsize", "full_if_older_than", "retention",
          "pre_hook", "post_hook", "args")


def _scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _yaml_string(str(value))


def _yaml_string(text):
    """A YAML double-quoted scalar that reads back as ``text``: what YAML may hold as it is stays
    (so names in any script read as they are), the rest is escaped. JSON's escapes are not enough:
    they write a character beyond U+FFFF as two surrogates, which YAML reads as two characters."""
    out = ['"']
    for ch in text:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF or (0xE000 <= o <= 0xFFFD and o != 0xFEFF) or o >= 0x10000:
            out.append(ch)
        elif o <= 0xFF:
            out.append(f"\\x{o:02x}")
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def to_yaml(entry, comment=None):
    """The entry as one item of a `cairn_jobs:` list (block YAML, strings double-quoted)."""
    lines = [f"# {comment}"] if comment else []
    first = True
    for key in sorted(entry, key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k)):
        value = entry[key]
        lead = "- " if first else "  "
        first = False
        if isinstance(value, list):
            lines.append(f"{lead}{key}:" + (" []" if not value else ""))
            lines += [f"    - {_scalar(item)}" for item in value]
        elif isinstance(value, dict):
            lines.append(f"{lead}{key}:" + (" {}" if not value else ""))
            lines += [f"    {k}: {_scalar(val)}" for k, val in value.items()]
        else:
            lines.append(f"{lead}{key}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


# --- adoption on the host: the secrets straight into the job's credentials file -----------------

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def credentials_text(env, job):
    """The credentials file as the cairn.backup.credentials role writes it (systemd's
    EnvironmentFile= syntax, KEY="value" with backslash and double quote escaped, sorted as
    Jinja's dictsort sorts)."""
    lines = [f"# Managed by Ansible (cairn.backup.job, adopted duply profile {job}); secrets, keep it 0600 root."]
    for key in sorted(env, key=str.lower):
        value = str(env[key])
        if not _ENV_NAME.fullmatch(key):
            raise UserError(f"{key!r} is not a variable name for the credentials file")
        if any(c in value for c in "\n\r\0"):
            raise UserError(f"the value of {key} holds a line break or NUL, which a credentials file cannot "
                            "hold (the value is not shown)")
        lines.append(f'{key}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "\n".join(lines) + "\n"


def write_credentials(path, text, check=False):
    """Write the credentials file (root's, 0600) when its content or mode differs; True when it
    did (or, with check, would). Written to a 0600 temporary file in the same directory, then
    renamed, so the secrets are never in a file anyone else can read."""
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            same = f.read() == text
        if same and st.st_mode & 0o7777 == 0o600 and st.st_uid == os.geteuid():
            return False
    except FileNotFoundError:
        pass
    except OSError as err:
        raise UserError(f"cannot read the credentials file {path}: {err.strerror or err}") from err
    if check:
        return True
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UserError(f"the credentials directory {directory} does not exist")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode("utf-8", "surrogateescape"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UserError(f"cannot write the credentials file {path}: {err.strerror or err}") from err
    return True


def adoption(result, credentials_file=None, check=False, base_env=None):
    """The machine-readable import (`--json`): the entry, the notes, the profile's scripts. With
    credentials_file the secrets (and the rest of the entry's env) go into that file, and the
    entry keeps none of them: only their variable names are listed. base_env: more variables for
    that file (the role's defaults for every job, e.g. CAIRN_SMTP_PASSWORD); the profile's win."""
    entry = dict(result.entry)
    doc = {"name": entry["name"], "profile_dir": result.profile_dir, "scripts": result.scripts,
           "notes": result.notes}
    if credentials_file:
        env = {**(base_env or {}), **result.credentials_env()}
        for key in ("passphrase", "sign_passphrase", "env"):
            entry.pop(key, None)
        doc["credentials"] = sorted(env)
        doc["credentials_file"] = credentials_file
        doc["credentials_changed"] = write_credentials(credentials_file, credentials_text(env, entry["name"]), check)
    else:
        doc["secrets"] = [{"vault": var, "from": what} for var, what in result.secrets]
    doc["entry"] = entry
    return doc


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"duply-import: {message}")


def _read_base_env(stream):
    """{NAME: value} from a JSON object (values shown nowhere, not even when they are wrong)."""
    try:
        doc = json.loads(stream.read() or "{}")
    except ValueError as err:
        raise UserError("duply-import: --base-env-stdin needs a JSON object on stdin") from err
    if not isinstance(doc, dict) or not all(isinstance(k, str) and _ENV_NAME.fullmatch(k) for k in doc) \
            or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in doc.values()):
        raise UserError("duply-import: --base-env-stdin needs a JSON object of variable names to strings")
    return {k: str(v) for k, v in doc.items()}


def main(argv, stdout=None, stderr=None, stdin=None):
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    p = _Parser(prog="cairn duply-import", description="Print a cairn_jobs entry for a duply profile.")
    p.add_argument("profile_dir")
    p.add_argument("--name", help="job name (default: the profile's folder name)")
    p.add_argument("--json", action="store_true", help="print one JSON document (entry, notes, scripts) instead")
    p.add_argument("--hook-dir", help="the hooks run copies of pre/post in this directory (DIR/pre, DIR/post)")
    p.add_argument("--credentials-file", help="with --json: write the secrets and env to this 0600 file "
                   "(the job's credentials) instead of referencing vault variables")
    p.add_argument("--check", action="store_true", help="with --credentials-file: only say whether it would change")
    p.add_argument("--base-env-stdin", action="store_true", help="with --credentials-file: a JSON object on stdin "
                   "of more variables for that file (secrets never on the command line); the profile's own win")
    try:
        ns = p.parse_args(argv)
        if (ns.credentials_file or ns.check) and not ns.json:
            raise UserError("duply-import: --credentials-file and --check need --json")
        if (ns.check or ns.base_env_stdin) and not ns.credentials_file:
            raise UserError("duply-import: --check and --base-env-stdin need --credentials-file")
        base_env = _read_base_env(stdin or sys.stdin) if ns.base_env_stdin else None
        result = import_profile(ns.profile_dir, name=ns.name, hook_dir=ns.hook_dir)
        if ns.json:
            doc = adoption(result, ns.credentials_file, ns.check, base_env)
    except UserError as err:
        stderr.write(f"cairn: {err.message}\n")
        return err.exit_code
    if ns.json:
        stdout.write(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        return ExitCode.OK
    stdout.write(to_yaml(result.entry, comment=f"cairn_jobs entry from duply profile {result.entry['name']}"))
    if result.secrets:
        stderr.write("Put these secrets into your vault (values from the profile's conf):\n")
        for var, what in result.secrets:
            stderr.write(f"  {var}: {what}\n")
    for note in result.notes:
        stderr.write(f"note: {note}\n")
    return ExitCode.OK


__all__ = ["ConfError", "Imported", "adoption", "credentials_text", "import_profile", "main", "parse_conf",
           "selection_from_exclude", "to_yaml", "write_credentials"]
