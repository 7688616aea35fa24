#!/usr/bin/env python3
"""Writes N generated users as Keyward NDJSON (stdout) for the import benchmark.

Every user has a username, email, phone, name, custom data, a social identity and a
pre-hashed password, in three formats in turn:
  - Django pbkdf2_sha256 (hashlib; 256 distinct digests computed once and reused, since
    computing a million PBKDF2s here would take longer than the import),
  - a salted SHA-256 legacy digest (JSON object) with a unique salt per user,
  - LDAP {SSHA} with a unique salt per user.
"""
import base64
import hashlib
import json
import os
import sys


def django_pbkdf2(password: str, salt: str, iterations: int = 1000) -> str:
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(dk).decode()}"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    django = [django_pbkdf2(f"password-{i}", f"salt{i:08d}") for i in range(256)]
    out = sys.stdout
    write = out.write
    for i in range(n):
        password = f"password-{i}".encode()
        kind = i % 3
        if kind == 0:
            digest = django[i % 256]
        elif kind == 1:
            salt = os.urandom(8).hex()
            digest = {
                "algorithm": "sha256",
                "hash": hashlib.sha256(salt.encode() + password).hexdigest(),
                "salt": salt,
                "salt_position": "before",
            }
        else:
            salt = os.urandom(4)
            digest = "{SSHA}" + base64.b64encode(hashlib.sha1(password + salt).digest() + salt).decode()
        row = {
            "external_id": f"u{i}",
            "username": f"user{i}",
            "primary_email": f"user{i}@example.com",
            "primary_phone": f"+1415{i:07d}",
            "name": f"User {i}",
            "custom_data": {"plan": "pro" if i % 2 else "free", "seq": i},
            "identities": {"github": {"user_id": f"gh{i}", "details": {"login": f"user{i}"}}},
            "password_digest": digest,
            "created_at": "2020-01-02T03:04:05Z",
        }
        write(json.dumps(row, separators=(",", ":")))
        write("\n")


if __name__ == "__main__":
    main()
