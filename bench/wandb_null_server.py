"""A W&B server that does nothing: canned GraphQL answers, file_stream and uploads accepted and
dropped. The floor of the official client's online mode, to compare cairn with:

    python3 bench/wandb_null_server.py 18971 &
    WANDB_BASE_URL=http://127.0.0.1:18971 WANDB_API_KEY=local-$(printf 'k%.0s' {1..40}) python train.py

beside the same script with WANDB_MODE=offline and with WANDB_BASE_URL at a release cairn
server. Not a W&B server for anything else: it stores nothing and checks nothing."""
import json, re, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
BASE = f"http://127.0.0.1:{PORT}"

def answer(op, variables):
    if op in ("Viewer", "GetViewer"):
        return {"viewer": {"id": "u", "entity": "null", "username": "null", "email": "", "flags": "{}", "teams": {"edges": []}}}
    if op == "ServerFeaturesQuery":
        return {"serverInfo": {"features": []}}
    if op == "UpsertBucket":
        v = variables
        name = v.get("name") or "run1"
        return {"upsertBucket": {"bucket": {"id": "b" + name, "name": name, "displayName": v.get("displayName") or name, "description": "", "config": "{}", "sweepName": None,
                 "project": {"id": "p", "name": v.get("project") or "p", "entity": {"id": "e", "name": "null"}}, "historyLineCount": 0}, "inserted": True}}
    if op == "RunResumeStatus":
        return {"model": {"id": "p", "name": "p", "entity": {"id": "e", "name": "null"}, "bucket": None}}
    if op == "CreateRunFiles":
        return {"createRunFiles": {"runID": "b", "uploadHeaders": [], "files": [{"name": f, "uploadUrl": f"{BASE}/upload/{i}"} for i, f in enumerate(variables.get("files", []))]}}
    return {}

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""
    def do_POST(self):
        raw = self.body()
        if self.path.startswith("/graphql"):
            req = json.loads(raw or b"{}")
            m = re.search(r"(query|mutation)\s+(\w+)", req.get("query", ""))
            self.reply({"data": answer(m.group(2) if m else "", req.get("variables") or {})})
        else:
            self.reply({"exitcode": None, "limits": {}, "stopped": False})
    def do_PUT(self):
        self.body(); self.reply({})

ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
