"""Amundsen frontend settings for running behind portcullis (no fork of Amundsen needed).

portcullis authenticates every request at Envoy and passes the user on in headers it sets itself
(a client's own copies are always removed first), and the access token in `Authorization`. This
module makes the frontend read the user from those headers and forward the token to the metadata
and search services.

    FRONTEND_SVC_CONFIG_MODULE_CLASS=portcullis_auth.PortcullisAuthConfig
    PYTHONPATH=<folder holding this file>

Header names follow portcullis's `upstream.headers` (the defaults below).
"""
import os
from typing import Dict, Optional

from flask import Flask, request
from amundsen_application.config import LocalConfig
from amundsen_application.models.user import User, load_user

USER_HEADER = os.environ.get("PORTCULLIS_USER_HEADER", "X-Auth-Request-User")
EMAIL_HEADER = os.environ.get("PORTCULLIS_EMAIL_HEADER", "X-Auth-Request-Email")


def portcullis_user(app: Flask) -> User:
    """The signed-in user, as portcullis identified them."""
    email = request.headers.get(EMAIL_HEADER)
    user_id = request.headers.get(USER_HEADER) or email
    return load_user({"user_id": user_id, "email": email, "display_name": email or user_id})


def portcullis_request_headers(app: Flask) -> Optional[Dict[str, str]]:
    """Headers for the frontend's calls to metadata and search: the caller's bearer token."""
    token = request.headers.get("Authorization")
    return {"Authorization": token} if token else {}


class PortcullisAuthConfig(LocalConfig):
    AUTH_USER_METHOD = portcullis_user
    REQUEST_HEADERS_METHOD = portcullis_request_headers
