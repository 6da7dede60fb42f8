"""The floor an HTTP gate is measured against: the least a Python gate for
Claude Code's ``http`` hook can be (issue 70).

A standard-library threaded HTTP server on loopback that reads the hook's
JSON and answers Claude Code's contract by three regular expressions: what
someone would write in an afternoon, with none of what spanvisor's gate does
(no shell parsing, so ``ls; rm -rf /`` passes ``^ls``; no people, no
deadline, no audit note). ``bench_gate.py`` times spanvisor's listener
against it in the same run: what the gate's guarantees cost over that.
"""

from __future__ import annotations

import http.server
import json
import re
import threading

ALLOW = re.compile(r"^(ls|ls .*|git status|echo .*)$")
DENY = re.compile(r"^rm ")


class FloorGate:
    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                command = str((doc.get("tool_input") or {}).get("command", ""))
                decision = "deny" if DENY.search(command) or not ALLOW.match(command) else "allow"
                body = json.dumps(
                    {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": decision}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
