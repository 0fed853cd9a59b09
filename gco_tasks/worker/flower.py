"""Flower, started only behind a well-formed login: ``python -m gco_tasks.flower [flower options]``.

Where it stands in the flow: beside the fleet, in front of the people who watch it. More in
docs/architecture.md.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

#: 16 characters: what ``openssl rand -base64 12`` or the sandbox's generated login gives (96 bits).
MIN_PASSWORD_LENGTH = 16
#: Flower signs OAuth session cookies with it; shorter secrets can be guessed offline.
MIN_COOKIE_SECRET_LENGTH = 32

BASIC = "FLOWER_BASIC_AUTH"
OAUTH_VARIABLES = (
    "FLOWER_AUTH",
    "FLOWER_AUTH_PROVIDER",
    "FLOWER_OAUTH2_KEY",
    "FLOWER_OAUTH2_SECRET",
    "FLOWER_OAUTH2_REDIRECT_URI",
)
PROVIDERS = frozenset(
    f"flower.views.auth.{name}"
    for name in ("GoogleAuth2LoginHandler", "GithubLoginHandler", "GitLabLoginHandler", "OktaLoginHandler")
)
#: Flower options that would set or replace the login; only the environment may carry them.
FORBIDDEN_OPTIONS = frozenset(
    {"basic_auth", "auth", "auth_provider", "oauth2_key", "oauth2_secret", "oauth2_redirect_uri"}
    | {"cookie_secret", "conf"}
)
FALSE_WORDS = frozenset({"", "0", "false", "no", "off", "n", "f"})

_USER = re.compile(r"^[^\s:,]+$")
_LOCAL = r"(?:[A-Za-z0-9!#$%&'+/=?^_`{}~-]|\.\*|\.)+"
_EMAIL_PATTERN = re.compile(rf"^{_LOCAL}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
_LOCAL_REDIRECT = re.compile(r"^http://(localhost|127\.0\.0\.1)(:\d+)?/")


class FlowerAuthError(ValueError):
    """Flower's login settings are missing or malformed; the message names the variable and the fix."""


def check_environment(environ: Mapping[str, str], argv: Sequence[str] = ()) -> None:
    """Raise ``FlowerAuthError`` unless Flower would start behind a well-formed login. Pure."""
    _check_argv(argv)
    unauthenticated = environ.get("FLOWER_UNAUTHENTICATED_API")
    if unauthenticated is not None and unauthenticated.strip().lower() not in FALSE_WORDS:
        raise FlowerAuthError(
            "FLOWER_UNAUTHENTICATED_API opens Flower's API to anyone: unset it and log in with "
            f"{BASIC} or OAuth."
        )
    has_basic = BASIC in environ
    has_oauth = any(name in environ for name in OAUTH_VARIABLES)
    if not has_basic and not has_oauth:
        raise FlowerAuthError(
            f"Flower never starts without a login: set {BASIC}=user:password (a password of at least "
            f"{MIN_PASSWORD_LENGTH} characters) or Flower's OAuth settings (FLOWER_AUTH ...)."
        )
    if has_basic:
        check_basic_auth(environ[BASIC])
    if has_oauth:
        check_oauth(environ)
    _check_cookie_secret(environ)


def check_basic_auth(value: str) -> None:
    """``user:password[,user:password...]``; each entry is checked; the value is never echoed."""
    if not value.strip():
        raise FlowerAuthError(
            f"{BASIC} is empty (an empty Secret?): set it to user:password with a password of at least "
            f"{MIN_PASSWORD_LENGTH} characters."
        )
    entries = value.split(",")
    for position, entry in enumerate(entries, start=1):
        problem = _basic_entry_problem(entry)
        if problem:
            where = f"login {position} of {len(entries)}" if len(entries) > 1 else "the login"
            raise FlowerAuthError(f"{BASIC}: {where} {problem}.")


def _basic_entry_problem(entry: str) -> str | None:
    separator = "comma-separate user:password logins, with nothing empty between commas"
    if not entry:
        return f"is empty (a trailing or doubled comma?): {separator}"
    if entry != entry.strip():
        return "has whitespace around it (a newline from --from-file?): remove it"
    user, colon, password = entry.partition(":")
    if not colon:
        return "has no ':' between user and password: write user:password"
    if not user or not _USER.match(user):
        return "has no user name before ':' (or one with spaces): write user:password"
    if not password:
        return "has an empty password: write user:password"
    if len(password) < MIN_PASSWORD_LENGTH:
        return (
            f"has a password shorter than {MIN_PASSWORD_LENGTH} characters: use a longer random one, "
            "such as the output of `openssl rand -base64 18`"
        )
    return None


def check_oauth(environ: Mapping[str, str]) -> None:
    """Every OAuth variable set and non-empty, a valid e-mail pattern, a known provider, an https
    redirect (http only to localhost)."""
    for name in OAUTH_VARIABLES:
        if not environ.get(name, "").strip():
            raise FlowerAuthError(
                f"{name} is missing or empty while other OAuth settings are set: set all of "
                f"{', '.join(OAUTH_VARIABLES)}, or unset them all and use {BASIC}."
            )
    _check_email_pattern(environ["FLOWER_AUTH"])
    provider = environ["FLOWER_AUTH_PROVIDER"]
    if provider not in PROVIDERS:
        raise FlowerAuthError(
            f"FLOWER_AUTH_PROVIDER must be one of Flower's providers ({', '.join(sorted(PROVIDERS))})."
        )
    redirect = environ["FLOWER_OAUTH2_REDIRECT_URI"]
    if not (redirect.startswith("https://") or _LOCAL_REDIRECT.match(redirect)):
        raise FlowerAuthError(
            "FLOWER_OAUTH2_REDIRECT_URI must be an https:// URL (http:// only for localhost), "
            "such as https://flower.example.com/login."
        )
    if provider.endswith("OktaLoginHandler") and not environ.get(
        "FLOWER_OAUTH2_OKTA_BASE_URL", ""
    ).startswith("https://"):
        raise FlowerAuthError("FLOWER_OAUTH2_OKTA_BASE_URL must be your Okta https:// URL for Okta logins.")


def _check_email_pattern(pattern: str) -> None:
    """Flower's FLOWER_AUTH: e-mails separated by '|', or one pattern with a single '.*' in the user part
    (e.g. '.*@example.com'); never a wildcard in the domain, which would let any domain in."""
    alternatives = pattern.split("|")
    wildcards = pattern.count("*")
    valid = all(_EMAIL_PATTERN.match(part) for part in alternatives)
    if not valid or wildcards > 1 or (wildcards and len(alternatives) > 1):
        raise FlowerAuthError(
            "FLOWER_AUTH must be e-mails separated by '|' or one pattern like '.*@example.com' "
            "(a single '.*', only before the '@')."
        )


def _check_cookie_secret(environ: Mapping[str, str]) -> None:
    secret = environ.get("FLOWER_COOKIE_SECRET")
    if secret is not None and len(secret) < MIN_COOKIE_SECRET_LENGTH:
        raise FlowerAuthError(
            f"FLOWER_COOKIE_SECRET must be at least {MIN_COOKIE_SECRET_LENGTH} random characters "
            "(or unset: Flower then draws one at start)."
        )


def _check_argv(argv: Sequence[str]) -> None:
    for arg in argv:
        option = arg.partition("=")[0]
        if arg.startswith("-") and option.lstrip("-").replace("-", "_") in FORBIDDEN_OPTIONS:
            raise FlowerAuthError(
                f"{option} is not accepted on the command line (ps shows it, and it would bypass this "
                f"check): put logins in {BASIC} or the FLOWER_AUTH/FLOWER_OAUTH2_* variables."
            )


def flower_argv(argv: Sequence[str]) -> list[str]:
    """The command this module becomes: Celery's Flower for ``gco_tasks``, with no config file."""
    return [sys.executable, "-m", "celery", "-A", "gco_tasks", "flower", "--conf=/dev/null", *argv]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Check the login settings, then exec Flower; exit 2 with one sentence on stderr if they are bad."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        check_environment(os.environ, args)
    except FlowerAuthError as exc:
        print(f"gco-tasks flower: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    command = flower_argv(args)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
