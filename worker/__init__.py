"""The Celery application: ``celery -A worker worker`` (or ``personio-sync worker``)."""

from config import get_settings
from worker.app import create_app

app = create_app(get_settings())

__all__ = ["app"]
