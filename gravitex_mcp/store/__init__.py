"""Where state lives: the task store and the video store.

Holds today's single-machine implementations: ``journal`` (the SQLite task
journal: records, submissions, idempotency claims, migrations, recovery),
``tasklock`` (one save of a task at a time across processes), ``leftovers`` (the
temp-file convention and the start-up sweep), ``storage`` (the output folder: safe
names, a temp file written while hashing, publish without clobbering), ``ondisk``
(saved files read back only once checked: no links, inside the held folder, the
same identity) and ``stills`` (contact sheets and frames beside the videos).

May import: the shared modules only. The only layer that imports ``sqlite3`` or
``fcntl``, or knows the state folder's layout and the temp-file names. Not:
``request/``, ``upstream/``, ``video/``, ``service/``, ``server/``, ``mcp``,
``httpx2``, ``av``.
"""
