#!/usr/bin/env python3
"""Writes a gateway revocation file (REVOCATION_FILE) holding N entries, for measuring the
revocation check's cost: 40% sessions (`sid`), 40% token ids (`jti`) and 20% users (`sub` with
`not_before`), random ids none of the benchmark's tokens carry, each expiring in a day.

usage: revocations.py N PATH
"""
import json
import os
import secrets
import sys
import time


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    count, path = int(sys.argv[1]), sys.argv[2]
    now = int(time.time())
    expires = now + 86_400
    entries = []
    for n in range(count):
        ident = secrets.token_urlsafe(24)
        if n % 5 < 2:
            entries.append({"sid": ident, "expires_at": expires})
        elif n % 5 < 4:
            entries.append({"jti": ident, "expires_at": expires})
        else:
            entries.append({"sub": ident, "not_before": now, "expires_at": expires})
    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        json.dump({"version": 1, "entries": entries}, out)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
