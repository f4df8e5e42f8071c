"""`m365sync keys`: the daemon's sealing keys (DESIGN.md, Secrets)."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from m365sync.config import Config
from m365sync.sealing import Keyring
from m365sync.service.runtime import TOKEN_CACHE_PURPOSE, open_gateway


def keys_command(config: Config, action: str, console: Console) -> int:
    path = config.keys.keyring_path()
    keyring = Keyring.load_or_create(path)
    if action == "rotate":
        kid = keyring.rotate()
        console.print(f"New sealing key [bold]{kid}[/]; older keys still open what they sealed.")
        console.print("Run `m365sync keys reseal` to seal everything with the new key.")
    elif action == "reseal":
        gateway = open_gateway(config)
        try:
            count = 0
            for account in gateway.list_accounts():
                # A sign-in renewed or refreshed since the list was read keeps its new seal.
                if account.sealed_token_cache and gateway.store_token_cache(
                    account.id,
                    keyring.reseal(account.sealed_token_cache, purpose=TOKEN_CACHE_PURPOSE),
                    replaces=account.sealed_token_cache,
                ):
                    count += 1
        finally:
            gateway.close()
        console.print(f"Resealed {count} token cache(s) with key {keyring.newest_kid}.")
        return 0
    elif action == "public":
        console.print_json(json.dumps(keyring.public_jwks()))
        return 0
    table = Table(title=f"Sealing keys in {path}", title_justify="left")
    table.add_column("Key id")
    table.add_column("Type")
    table.add_column("Newest")
    for key in keyring.public_jwks()["keys"]:
        table.add_row(
            key["kid"],
            f"{key['kty']} {key.get('crv', '')}",
            "yes" if key["kid"] == keyring.newest_kid else "",
        )
    console.print(table)
    return 0
