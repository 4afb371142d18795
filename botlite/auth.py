"""The admin token: from BOTLITE_ADMIN_TOKEN, or generated once into the data dir."""
from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat

from botlite.settings import MIN_ADMIN_TOKEN_CHARS, Settings, SettingsError

logger = logging.getLogger(__name__)


def admin_token(settings: Settings) -> str:
    """The configured token, else the one in <data dir>/admin_token (created 0600)."""
    if settings.admin_token:
        return settings.admin_token
    path = settings.admin_token_path
    if os.path.exists(path):
        return _read_token(path)
    token = secrets.token_urlsafe(32)
    # Write a private temp file, then link it into place: the link fails if a
    # concurrent start won the race, and nobody ever reads a half-written file.
    temp = "%s.%d.tmp" % (path, os.getpid())
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        try:
            os.link(temp, path)
        except OSError as exc:
            if isinstance(exc, FileExistsError):
                raise
            # No hard links on this filesystem: exclusive create instead.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(token + "\n")
    except FileExistsError:
        return _read_token(path)
    except OSError as exc:
        raise SettingsError("cannot create %s: %s" % (path, exc.strerror or exc)) from None
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    logger.info("generated a new admin token in %s", path)
    return token


def _read_token(path: str) -> str:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        try:
            os.chmod(path, 0o600)
            logger.warning("%s was readable by others; its mode is now 0600", path)
        except OSError:
            logger.warning("%s is readable by others (mode %o) and cannot be changed",
                           path, mode)
    with open(path) as handle:
        token = handle.read().strip()
    if not token:
        raise SettingsError("%s is empty: delete it to generate a new token" % path)
    if len(token) < MIN_ADMIN_TOKEN_CHARS or any(c.isspace() for c in token):
        # Written by hand, say: held to the rule BOTLITE_ADMIN_TOKEN is held to.
        raise SettingsError("%s: the admin token must be at least %d characters without "
                            "spaces (delete the file to have one generated)"
                            % (path, MIN_ADMIN_TOKEN_CHARS))
    return token


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so timing does not reveal the token."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
