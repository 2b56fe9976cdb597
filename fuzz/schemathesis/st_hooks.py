"""schemathesis hooks for cairn's own media types (loaded by scripts/fuzz-api.sh through
SCHEMATHESIS_HOOKS): request bodies of application/x-cairn-contents are sent as the bytes the
generator made (a batch of contents the server must refuse or store, never crash on)."""

import json

import schemathesis


@schemathesis.serializer("application/x-cairn-contents", "application/octet-stream")
def raw_bytes(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value, default=str).encode()
