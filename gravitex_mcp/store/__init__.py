"""Where state lives: the task store and the video store.

``seam`` is what the layers above hold: the ``TaskStore`` and ``VideoStore``
protocols, the value types they hand out, and the one wait-for-a-holder loop. Today's
single-machine implementations sit behind it: ``journal`` (the SQLite task store:
records, submissions, idempotency claims, save and poll leases) on ``sqlite_open`` (opening,
sharing, recovery), ``sqlite_schema`` (migrations), ``sqlite_rows`` (the rows' SQL),
``sqlite_files`` (setting a damaged file aside) and ``tasklock`` (flock files as
leases); ``storage`` (the output folder: safe names, a writer hashing as it writes)
on ``tempfiles`` (the temp-file rule, the no-clobber publish, the start-up sweep),
``ondisk`` (saved files read back only once checked) and ``stills`` (contact sheets
and frames beside the videos). ``objects`` is the video store in S3-compatible
storage (``GRAVITEX_STORAGE_URL``; multipart uploads, create-only copies, presigned
links), the only module that imports ``obstore`` (the team extra). ``postgres`` is
the task store in PostgreSQL (``GRAVITEX_DATABASE_URL``; psycopg's async pool) on
``pg_pool`` (its connections: busy or unreachable, the wait, the listings' own),
``pg_schema`` (migrations under an advisory lock), ``pg_leases`` (leases as rows with
an expiry, renewed by a heartbeat), ``pg_changes`` (LISTEN/NOTIFY), ``pg_rows``,
``pg_reading`` (a task, listings, completion), ``pg_recording`` (status changes and
saves, one statement each) and ``pg_ready`` (``/readyz``, the tasks gauge). Per user,
on each backend: ``sqlite_usage`` and ``pg_usage`` (whose a task is, budgets, the
submit rate limit). ``records`` holds a task's record;
``media_links`` mints and checks the media links; ``ready`` the embedded default's
``/readyz`` checks.

May import: the shared modules only. The only layer that imports ``sqlite3``,
``fcntl``, ``psycopg`` or ``obstore``, or knows the state folder's layout and the
temp-file names. Only ``store/`` and the composition root (``server/app.py``) name the
implementations. Not: ``request/``, ``upstream/``, ``video/``, ``service/``,
``server/``, ``mcp``, ``httpx2``, ``av``.
"""
