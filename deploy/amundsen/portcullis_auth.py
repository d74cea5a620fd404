"""Amundsen frontend settings for running behind portcullis (no fork of Amundsen needed).

portcullis authenticates every request at Envoy and passes the user on in headers it sets itself
(a client's own copies are always removed first), the access token in `Authorization`, and, with
`upstream.assertion`, a signed assertion of who it is. This module makes the frontend read the user
from those headers and forward the token and the assertion to the metadata and search services.

    FRONTEND_SVC_CONFIG_MODULE_CLASS=portcullis_auth.PortcullisAuthConfig
    PYTHONPATH=<folder holding this file>

Header names follow portcullis's `upstream.headers` (the defaults below).

A request without a usable user gets a JSON answer saying so, never a 500 (Amundsen's own
`/api/auth_user` fails with one when the metadata service has no such user, Amundsen issue #1525):

- an `/api/` request that portcullis named no one for (it did not come through portcullis, or
  through a public route) is a 401;
- `/api/auth_user` for someone the metadata service does not know is a 403: a machine-to-machine
  token (client credentials: its user is the client id, with no email) is signed in, but no
  Amundsen user. The metadata service failing is a 502.
"""
import logging
import os
from http import HTTPStatus
from typing import Dict, Optional
from urllib.parse import quote

from flask import Flask, Response, current_app, jsonify, make_response, request
from amundsen_application.api.metadata.v0 import USER_ENDPOINT
from amundsen_application.api.utils.request_utils import request_metadata
from amundsen_application.config import LocalConfig
from amundsen_application.models.user import User, dump_user, load_user

USER_HEADER = os.environ.get("PORTCULLIS_USER_HEADER", "X-Auth-Request-User")
ASSERTION_HEADER = os.environ.get("PORTCULLIS_ASSERTION_HEADER", "X-Portcullis-Assertion")
EMAIL_HEADER = os.environ.get("PORTCULLIS_EMAIL_HEADER", "X-Auth-Request-Email")

LOGGER = logging.getLogger(__name__)


def _header(name: str) -> Optional[str]:
    value = (request.headers.get(name) or "").strip()
    return value or None


def _identified() -> bool:
    return bool(_header(USER_HEADER) or _header(EMAIL_HEADER))


def _refuse(status: HTTPStatus, message: str, **extra: Optional[str]) -> Response:
    return make_response(jsonify({"msg": message, **extra}), status)


def portcullis_user(app: Flask) -> User:
    """The signed-in user, as portcullis identified them."""
    email = _header(EMAIL_HEADER)
    user_id = _header(USER_HEADER) or email
    if not user_id:
        # Unreachable for /api/ (refused first, below); elsewhere better than a dict of errors.
        raise LookupError(f"no user: portcullis set neither {USER_HEADER} nor {EMAIL_HEADER}")
    return load_user({"user_id": user_id, "email": email, "display_name": email or user_id})


def portcullis_request_headers(app: Flask) -> Optional[Dict[str, str]]:
    """Headers for the frontend's calls to metadata and search: the caller's bearer token, and
    portcullis's signed assertion of who the caller is (`upstream.assertion`; metadata and search
    verify it with portcullis_assertion.py)."""
    headers = {}
    for name in ("Authorization", ASSERTION_HEADER):
        value = request.headers.get(name)
        if value:
            headers[name] = value
    return headers


def _require_a_user() -> Optional[Response]:
    """Before every request: the frontend's API answers only someone portcullis identified."""
    if request.path.startswith("/api/") and not _identified():
        return _refuse(
            HTTPStatus.UNAUTHORIZED,
            "not signed in: no user from portcullis (the request did not pass Envoy and portcullis, "
            "or came through a public route)",
        )
    return None


def auth_user() -> Response:
    """`/api/auth_user`: Amundsen's own answer for a user the metadata service knows, and a 403
    (not Amundsen's 500) for one it does not, such as a machine-to-machine token's client."""
    user = portcullis_user(current_app)
    url = f"{current_app.config['METADATASERVICE_BASE']}{USER_ENDPOINT}/{quote(user.user_id, safe='@')}"
    try:
        response = request_metadata(url=url)
        found = response.json() if response.status_code == HTTPStatus.OK else None
    except Exception:  # unreachable, or not JSON
        LOGGER.exception("the metadata service did not answer for user %s", user.user_id)
        return _refuse(HTTPStatus.BAD_GATEWAY, "the metadata service did not answer", user_id=user.user_id)
    if isinstance(found, dict):
        return make_response(jsonify({"msg": "Success", "user": dump_user(load_user(found))}), HTTPStatus.OK)
    if response.status_code in (HTTPStatus.OK, HTTPStatus.NOT_FOUND):  # 404 with `null`: no such user
        return _refuse(
            HTTPStatus.FORBIDDEN,
            f"{user.user_id} is signed in but is not an Amundsen user: the metadata service has no "
            "such user (a machine-to-machine token names a client, not a person)",
            user_id=user.user_id,
        )
    LOGGER.error("the metadata service answered %s for user %s", response.status_code, user.user_id)
    return _refuse(
        HTTPStatus.BAD_GATEWAY,
        f"the metadata service answered {response.status_code} for this user",
        user_id=user.user_id,
    )


def init_portcullis_routes(app: Flask) -> None:
    app.before_request(_require_a_user)
    app.view_functions["main.current_user"] = auth_user


class PortcullisAuthConfig(LocalConfig):
    AUTH_USER_METHOD = portcullis_user
    REQUEST_HEADERS_METHOD = portcullis_request_headers
    INIT_CUSTOM_ROUTES = init_portcullis_routes
