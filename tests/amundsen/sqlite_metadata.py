"""Amundsen's metadata service on SQLite through its RDS (MySQL) proxy: tests only.

METADATA_SVC_CONFIG_MODULE_CLASS=sqlite_metadata.SqliteConfig (or SqliteAssertionConfig, with
deploy/amundsen/portcullis_assertion.py), SQLALCHEMY_DATABASE_URI=sqlite:///...
`python sqlite_metadata.py` creates the tables in that database.
"""
import os

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from metadata_service.config import MySQLConfig


@event.listens_for(Engine, "connect")
def _collation(dbapi_connection, _record):
    # The RDS models name a MySQL collation; give SQLite one of that name.
    if hasattr(dbapi_connection, "create_collation"):
        dbapi_connection.create_collation("latin1_general_cs", lambda a, b: (a > b) - (a < b))


class SqliteConfig(MySQLConfig):
    SQLALCHEMY_DATABASE_URI = os.environ["SQLALCHEMY_DATABASE_URI"]
    PROXY_CLIENT_KWARGS = {"echo": False}


class SqliteAssertionConfig(SqliteConfig):
    """Answers only requests with portcullis's signed assertion (deploy/amundsen, on PYTHONPATH)."""
    @staticmethod
    def INIT_CUSTOM_EXT_AND_ROUTES(app):  # noqa: N802 (Amundsen's name)
        from portcullis_assertion import init_app

        init_app(app)


if __name__ == "__main__":
    from amundsen_rds.models.base import Base

    Base.metadata.create_all(create_engine(os.environ["SQLALCHEMY_DATABASE_URI"]))
