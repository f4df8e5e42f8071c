"""A Microsoft identity platform + Graph v1.0 emulator over HTTPS, for demos, tests and users.

`Emulator` (server.py) serves identity (identity.py) and Graph (graph_api.py) over a loopback
HTTPS socket whose certificate comes from a trustme CA; `Mailbox` (mailbox.py) holds the data,
seeded (seed.py) or loaded from Graph-shaped JSON; `FaultPlan` (faults.py) injects failures.
"""
