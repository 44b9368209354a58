"""The model catalog: every model the Gravitex docs list and what it accepts, as data.

Holds ``models`` (the table: ids, families, modes, delivery, every argument's valid
values or range, combination rules), ``describe`` (the table in words and JSON: valid
values for messages, each model for ``list_models`` and the schemas),
``argument_docs`` (the per-model part of each argument's description) and
``markers`` (Seedance ``--markers`` read from a prompt).

May import: the shared modules only. No I/O, no per-model code anywhere else:
every other layer reads its rules from here.
"""
