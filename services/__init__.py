"""Service functions: plain, typed functions that take their session and clients as arguments.

Transactions — who commits: the caller. A service changes the session and at most flushes
(to get ids, or to hit a constraint); the task or CLI wrapper that opened the session commits
it once the service returns (``worker.runtime.Runtime.session`` commits on success and rolls
back on error), so services compose: one calls another inside the same unit of work. The
deliberate exceptions, each marked with a comment that points here:

- recovery points in the upload step (``services/processing.py``): it commits after every
  Personio answer, so a retry resumes at the last committed step;
- ``models.db.end_transaction`` right before network I/O (Personio, a jobs feed, a document
  host; ``services/events.py`` likewise before Redis): no transaction — on SQLite, the write
  lock — stays open while a remote host answers, so whatever the service did so far is
  committed there;
- a race on a unique key (intake's ``request_id``) is settled in a SAVEPOINT
  (``session.begin_nested``), which rolls back only the losing insert and commits nothing.

Tests lean on the rule: a service test whose data only its own session reads is marked
``rolled_back`` and runs in one outer transaction rolled back at its end (``tests/conftest.py``);
there the commits above release SAVEPOINTs, so they behave as in production.
"""
