"""Opening pull requests on a forge: GitHub's REST API (``POST /repos/{owner}/{repo}/pulls``).

The token is read from the environment variable the repository's config names, at the
moment of the call; it goes only into the ``Authorization`` header (of the API request, or
of a push to the forge's own host), never into a message, a result or the audit trail: a
reply that echoes it (an error body, a URL) has it replaced before anything is built from it.
Redirects are not followed, so the token cannot be carried to another host.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

import httpx

from cedargate.config import ForgeConfig
from cedargate.errors import HandlerError
from cedargate.redact import REDACTED, redact_text

API_VERSION = "2022-11-28"
TIMEOUT_SECONDS = 30.0
MAX_MESSAGE_CHARS = 500
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    api_url: str


def _check_api_url(forge: ForgeConfig, repository: str) -> None:
    api = httpx.URL(forge.api_url)
    # The token travels only over TLS, or to a stand-in on this machine's loopback.
    if api.scheme != "https" and not (api.scheme == "http" and api.host in _LOOPBACK):
        raise HandlerError(f"repository `{repository}`: `forge.api_url` must be https (got `{forge.api_url}`)")


def forge_token(forge: ForgeConfig, repository: str) -> str:
    """The repository's forge token from its environment variable, once the API URL is fit to receive it."""
    _check_api_url(forge, repository)
    if forge.token_env is None:
        raise HandlerError(f"repository `{repository}`: forge `github` needs `forge.token_env` in the config")
    token = os.environ.get(forge.token_env, "")
    if not token:
        raise HandlerError(
            f"repository `{repository}`: environment variable `{forge.token_env}` (its forge token) is not set"
        )
    return token


def forge_auth_env(forge: ForgeConfig, repository: str, url: str) -> dict[str, str]:
    """git's environment for fetching from or pushing to ``url``: the forge token, if ``url`` is the forge's.

    An https URL on the forge's own host (GitHub's API host without ``api.``) is sent the
    token as ``x-access-token`` credentials in ``http.extraHeader``, set through git's
    environment (a command line is readable by every user of the machine), with redirects
    off so the header cannot follow to another host. Other URLs (a path, ssh) go as before;
    a plain-http URL on the forge's host is refused rather than sent the token.
    """
    if forge.kind != "github" or not url.startswith(("https://", "http://")):
        return {}
    target, api = httpx.URL(url), httpx.URL(forge.api_url)
    if target.host not in {api.host, api.host.removeprefix("api.")}:
        return {}
    if target.scheme != "https" and not (target.scheme == "http" and target.host in _LOOPBACK):
        raise HandlerError(
            f"repository `{repository}`: a git URL on the forge's host must be https to be sent the forge token"
        )
    credentials = base64.b64encode(f"x-access-token:{forge_token(forge, repository)}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {credentials}",
        "GIT_CONFIG_KEY_1": "http.followRedirects",
        "GIT_CONFIG_VALUE_1": "false",
    }


def open_github_pull_request(
    forge: ForgeConfig, repository: str, token: str, *, head: str, base: str, title: str, body: str
) -> PullRequest:
    """Create the pull request; fails with the forge's status and message (never the token)."""
    target = forge.repository or repository
    url = f"{forge.api_url.rstrip('/')}/repos/{target}/pulls"
    _check_api_url(forge, repository)
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": "cedargate",
    }
    payload = {"title": title, "head": head, "base": base, "body": body}
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = client.post(url, json=payload, headers=headers)
    except httpx.HTTPError as exc:
        raise HandlerError(f"forge `{forge.api_url}` could not be reached: {type(exc).__name__}") from exc
    if response.status_code != 201:
        raise HandlerError(
            f"forge refused the pull request for `{target}` (HTTP {response.status_code}): {_refusal(response, token)}"
        )
    return _created(forge, target, token, response)


def _created(forge: ForgeConfig, target: str, token: str, response: httpx.Response) -> PullRequest:
    """The pull request a 201 describes; a reply without its number is the forge's error, not a crash."""
    data = _json(response)
    if not isinstance(data, dict) or type(data.get("number")) is not int:
        raise HandlerError(
            f"forge `{forge.api_url}` answered HTTP {response.status_code} without a pull request number "
            f"for `{target}`: check that `forge.api_url` is GitHub's REST API"
        )
    number: int = data["number"]
    url, api_url = (_scrub(str(data.get(key) or ""), token) for key in ("html_url", "url"))
    return PullRequest(number=number, url=url, api_url=api_url)


def _refusal(response: httpx.Response, token: str) -> str:
    """The forge's message and, as GitHub's 422 gives them, what each error names (``errors[].message``)."""
    data = _json(response)
    if not isinstance(data, dict):
        return _scrub(response.text, token) or "no message"
    errors = data.get("errors")
    details = [_error_detail(e) for e in errors] if isinstance(errors, list) else []
    text = ": ".join(filter(None, [str(data.get("message") or ""), "; ".join(filter(None, details))]))
    return _scrub(text, token) or "no message"


def _error_detail(error: object) -> str:
    """One entry of GitHub's ``errors``: its message, else the field and code it names."""
    if not isinstance(error, dict):
        return str(error)
    if error.get("message"):
        return str(error["message"])
    return " ".join(str(error[k]) for k in ("field", "code") if error.get(k))


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _scrub(text: str, token: str) -> str:
    """``text`` from the forge's reply without the token (a forge may echo it) or any known secret shape.

    The token goes before the text is cut, so no part of it can survive at the cut.
    """
    return redact_text(text.replace(token, REDACTED) if token else text)[:MAX_MESSAGE_CHARS]
