"""Verify portcullis's signed identity (`upstream.assertion`) in Amundsen's metadata and search
services, so that they know who asks from a signature instead of trusting a header or a forwarded
access token.

portcullis signs a JWT (EdDSA, a minute's life) for every request it lets through with a caller and
puts it in `X-Portcullis-Assertion`; the frontend passes it on to metadata and search
(portcullis_auth.py). Its keys are on portcullis's admin port at `/.well-known/jwks.json`. With this
module a service answers only requests that carry a valid one: anything else is a JSON 401, and the
verified claims (`sub`, `user`, `email`, `groups`, `route`) are in `flask.g.portcullis`.

In the service's config class (METADATA_SVC_CONFIG_MODULE_CLASS, SEARCH_SVC_CONFIG_MODULE_CLASS):

    import portcullis_assertion
    class Config(...):
        INIT_CUSTOM_EXT_AND_ROUTES = portcullis_assertion.init_app

and in its environment:

    PORTCULLIS_JWKS_URL=http://portcullis:9090/.well-known/jwks.json     (required)
    PORTCULLIS_ASSERTION_AUDIENCE=amundsen                # upstream.assertion.audience (required)
    PORTCULLIS_ASSERTION_ISSUER=https://portcullis.invalid/   # upstream.assertion.issuer
    PORTCULLIS_ASSERTION_HEADER=X-Portcullis-Assertion    # upstream.assertion.header
    PORTCULLIS_ASSERTION_OPEN_PATHS=/healthcheck          # comma-separated paths that need none

Needs PyJWT with its crypto extra (EdDSA): `pip install "PyJWT[crypto]"`.
"""
import logging
import os
from http import HTTPStatus
from typing import Optional

import jwt
from flask import Flask, Response, g, jsonify, make_response, request

LOGGER = logging.getLogger(__name__)

# Clock differences between portcullis and this service, in seconds.
LEEWAY = 5


def _refuse(status: HTTPStatus, message: str) -> Response:
    return make_response(jsonify({"msg": message}), status)


def init_app(app: Flask) -> None:
    """Makes every request but the open paths carry a valid assertion."""
    jwks_url = os.environ["PORTCULLIS_JWKS_URL"]
    audience = os.environ["PORTCULLIS_ASSERTION_AUDIENCE"]
    issuer = os.environ.get("PORTCULLIS_ASSERTION_ISSUER", "https://portcullis.invalid/")
    header = os.environ.get("PORTCULLIS_ASSERTION_HEADER", "X-Portcullis-Assertion")
    open_paths = [p for p in os.environ.get("PORTCULLIS_ASSERTION_OPEN_PATHS", "/healthcheck").split(",") if p]
    # Keys are fetched once and again for a kid not seen (a rotated session.secret).
    keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)

    def verify() -> Optional[Response]:
        if any(request.path == p or request.path.startswith(p.rstrip("/") + "/") for p in open_paths):
            return None
        assertion = (request.headers.get(header) or "").strip()
        if not assertion:
            return _refuse(HTTPStatus.UNAUTHORIZED, f"no {header}: the request did not come through portcullis")
        try:
            key = keys.get_signing_key_from_jwt(assertion)
        except jwt.PyJWKClientConnectionError:
            LOGGER.exception("portcullis's keys could not be fetched from %s", jwks_url)
            return _refuse(HTTPStatus.SERVICE_UNAVAILABLE, "cannot verify the assertion right now")
        except jwt.PyJWTError as e:
            return _refuse(HTTPStatus.UNAUTHORIZED, f"invalid {header}: {type(e).__name__}")
        try:
            g.portcullis = jwt.decode(
                assertion,
                key.key,
                algorithms=["EdDSA"],
                audience=audience,
                issuer=issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.PyJWTError as e:
            return _refuse(HTTPStatus.UNAUTHORIZED, f"invalid {header}: {type(e).__name__}")
        return None

    app.before_request(verify)
