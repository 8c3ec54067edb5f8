"""kombu's broker connection, without a stale channel after the broker went away.

When a worker loses Redis, Celery (5.7) first calls ``Connection.collect()`` and then
``Connection.close()``. kombu's ``collect()`` detaches the transport (``transport.client =
None``) but keeps the connection's default channel — the one the worker consumes with, half
closed because Redis did not answer. ``close()`` then closes that channel again; a channel with
messages in flight (``task_acks_late``: every running task) restores them through its Redis
pool, and rebuilding that pool reads ``transport.client.hostname``: ``AttributeError:
'NoneType' object has no attribute 'hostname'``. That is not a connection error, so the worker
logs "Unrecoverable error" and exits instead of reconnecting.

Here ``collect()`` also forgets the default channel, as it forgets the connection and the
transport; the worker then reconnects with a new connection and channel. The messages the old
channel held stay in Redis's unacked set: a task still running acks its message through the old
channel's pool if Redis is back by then, and the visibility timeout restores any left unacked.
"""

from __future__ import annotations

from typing import Any

import kombu
from celery.app.amqp import AMQP as CeleryAMQP


class Connection(kombu.Connection):
    def collect(self, socket_timeout: Any = None) -> None:
        try:
            super().collect(socket_timeout)
        finally:
            self._default_channel = None


class AMQP(CeleryAMQP):
    """Celery's AMQP helpers with :class:`Connection` (``Celery(amqp="worker.connection:AMQP")``)."""

    Connection = Connection
    BrokerConnection = Connection
