"""run.alert: stored with the run, rate-limited by title, delivered by the server to a real HTTP
receiver (a Slack-compatible webhook) and a real SMTP server, with retries."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import urllib.request

import pytest

from conftest import Server, run_script, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """An incoming-webhook receiver; answers 500 to the first `fail_first` posts."""

    def __init__(self, fail_first: int = 0) -> None:
        self.posts: list[dict] = []
        self.attempts = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= fail_first:
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"not now")
                    return
                receiver.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[tuple[str, list[str], str]] = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode("utf8", "replace")))
            return "250 Message accepted for delivery"

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def alerts_of(url: str, project: str, run_id: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v1/runs/tester/{project}/{run_id}/alerts") as response:
        return json.load(response)


def test_alerts_reach_a_webhook_and_an_smtp_server_once_per_title(tmp_path, project, smtp):
    controller, inbox = smtp
    receiver = Receiver(fail_first=2)
    server = Server(
        tmp_path / "data",
        "--alert-webhook-url", receiver.url,
        "--smtp", f"127.0.0.1:{controller.port}",
        "--smtp-from", "cairn <alerts@example.com>",
        "--smtp-to", "team@example.com,oncall@example.com",
        "--public-url", "http://cairn.example.com",
    )
    try:
        env = {"CAIRN_BASE_URL": server.url, "CAIRN_DIR": str(tmp_path), "CAIRN_SILENT": "true"}
        result = run_script(
            f"""
            from datetime import timedelta
            import cairn
            run = cairn.init(project={project!r}, id="alerting", name="lr-sweep-3")
            sent = [
                run.alert("Loss is NaN", "step 1200: loss became NaN", level=cairn.AlertLevel.ERROR),
                run.alert("Loss is NaN", "step 1201: still NaN", level="ERROR"),
                run.alert("Accuracy <b>high</b>", "acc 0.99", level="INFO", wait_duration=timedelta(seconds=1)),
            ]
            print(sent)
            try:
                run.alert("x", "y", level="LOUD")
            except cairn.errors.InvalidValue as e:
                print("refused:", e)
            run.finish()
            """,
            tmp_path,
            env,
        )
        assert result.returncode == 0, result.stderr
        # Within wait_duration the same title is sent once.
        assert "[True, False, True]" in result.stdout
        assert "LOUD" in result.stdout
        alerts = wait_for(
            lambda: (a := alerts_of(server.url, project, "alerting")) and all(x["delivery"] == "delivered" for x in a) and a,
            timeout=30,
            what="both alerts delivered",
        )
        assert [(a["title"], a["level"]) for a in alerts] == [("Loss is NaN", "ERROR"), ("Accuracy <b>high</b>", "INFO")]
        # The webhook failed twice: each alert was retried until it went through.
        assert receiver.attempts >= 4 and sum(a["attempts"] for a in alerts) >= 3
        posts = sorted(receiver.posts, key=lambda p: p["cairn"]["title"])
        assert [p["cairn"]["title"] for p in posts] == ["Accuracy <b>high</b>", "Loss is NaN"]
        nan = posts[1]
        assert "lr-sweep-3" in nan["text"] and "[ERROR]" in nan["text"]
        assert "http://cairn.example.com/tester/" in nan["text"]
        assert nan["attachments"][0]["text"] == "step 1200: loss became NaN"
        # Email: one per alert, to both recipients, not again when the webhook is retried.
        assert all(sorted(a["delivered_to"]) == ["email", "webhook"] for a in alerts)
        assert len(inbox.messages) == 2, [m[2][:200] for m in inbox.messages]
        mail_from, rcpt, content = next(m for m in inbox.messages if "Loss is NaN" in m[2])
        assert mail_from == "alerts@example.com" and sorted(rcpt) == ["oncall@example.com", "team@example.com"]
        assert "Subject: [ERROR] Loss is NaN (lr-sweep-3)" in content and "step 1200: loss became NaN" in content
    finally:
        server.stop()
        receiver.close()


def test_an_unreachable_target_never_fails_the_program(tmp_path, project):
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    server = Server(tmp_path / "data", "--alert-webhook-url", dead)
    try:
        env = {"CAIRN_BASE_URL": server.url, "CAIRN_DIR": str(tmp_path), "CAIRN_SILENT": "true"}
        started = time.monotonic()
        result = run_script(
            f"""
            import cairn
            run = cairn.init(project={project!r}, id="lonely")
            assert run.alert("Disk full", "no space left")
            run.finish()
            """,
            tmp_path,
            env,
        )
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 20
        alert = wait_for(lambda: (a := alerts_of(server.url, project, "lonely")) and a[0]["attempts"] >= 2 and a[0], what="retries")
        # The error names the target by host only: a webhook's path is its secret.
        assert alert["delivery"] == "pending" and "127.0.0.1" in alert["last_error"], alert
        assert "nobody-listens" not in alert["last_error"]
    finally:
        server.stop()


def test_without_targets_alerts_are_stored(server, env, tmp_path, project):
    result = run_script(
        f"""
        import cairn
        run = cairn.init(project={project!r}, id="quiet-alerts")
        run.alert("Checkpoint saved", "epoch 3", level="WARN")
        run.finish()
        """,
        tmp_path,
        env,
    )
    assert result.returncode == 0, result.stderr
    alert = wait_for(lambda: (a := alerts_of(server.url, project, "quiet-alerts")) and a[0]["delivery"] != "pending" and a[0], what="stored")
    assert alert["delivery"] == "stored" and alert["level"] == "WARN" and alert["text"] == "epoch 3"
