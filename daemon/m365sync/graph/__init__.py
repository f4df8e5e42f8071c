"""Microsoft identity and Graph: the only package that speaks HTTP to Microsoft.

- ``transport``: the one requests Session (forced CA bundle, connection-level retries only),
  shared by the Graph client and msal.
- ``auth``: msal wrapped — connect an account, hand out access tokens, map identity errors.
- ``client``: ``GraphClient`` — paging, ``Retry-After``, 4 requests in flight per mailbox,
  Graph errors turned into the typed errors of ``m365sync.errors``.
- ``mail``: pure parsers from Graph JSON to ``m365sync.domain`` and a per-folder delta reader.

Submodules are imported explicitly (``from m365sync.graph.client import GraphClient``) so that
importing the parsers does not import msal.
"""
