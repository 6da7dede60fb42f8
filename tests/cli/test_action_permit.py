"""``spanvisor emit approval --action`` against a real receiver and pipeline:
the CLI shows the action before deciding, the shell agent exits 0 only when
its action is permitted (once), and the permit route answers other
languages; a decision for the staging request never fits the prod one."""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from typing import Any

from spanvisor.canonical import canonical_json
from spanvisor.cli.emit_approval import approval_id_for
from spanvisor.cli.main import main
from tests.waiting import wait_until

from .conftest import Run
from .test_decide import TOKEN, _Serve, serve  # noqa: F401 - fixtures

STAGING = {"tool": "migrate", "arguments": {"target": "staging"}}
PROD = {"tool": "migrate", "arguments": {"target": "prod"}}


def _permit(s: _Serve, task: str, aid: str, action: dict[str, Any] | None) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{s.base}/v1/control/tasks/{task}/approvals/{aid}/permit",
        data=json.dumps({"action": action}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


def test_emit_approval_with_an_action_exits_0_only_when_permitted(cli: Run, serve: _Serve) -> None:  # noqa: F811
    endpoint = ("--endpoint", serve.base, "--token", TOKEN)
    question = "Run the migration?"
    tasks = {t: f"{t}-{uuid.uuid4().hex[:6]}" for t in ("staging", "prod")}
    results: dict[str, list[int]] = {"staging": [], "prod": []}
    threads = []
    for name, action in (("staging", STAGING), ("prod", PROD)):
        assert cli("emit", "start", "--task", tasks[name], "--agent", "sh", "--name", "migrate", *endpoint)[0] == 0
        argv = ["emit", "approval", "--task", tasks[name], "--question", question, "--wait", "60"]
        argv += ["--action", json.dumps(action), *endpoint]
        th = threading.Thread(target=lambda a=argv, n=name: results[n].append(main(a)), daemon=True)
        th.start()
        threads.append(th)
    aid = approval_id_for(question, canonical_json(STAGING), None)
    wait_until(lambda: serve.task(tasks["staging"])["approvals"], what="the staging request")
    wait_until(lambda: serve.task(tasks["prod"])["approvals"], what="the prod request")
    shown = serve.task(tasks["staging"])["approvals"][0]
    assert shown["approval_id"] == aid and shown["action"] == STAGING
    prod_aid = serve.task(tasks["prod"])["approvals"][0]["approval_id"]
    common = ("--url", serve.base, "--token", TOKEN, "--as", "alice")
    # The staging screen's digest on the prod request: refused.
    code, _, err = cli("approve", tasks["prod"], prod_aid, "--digest", shown["digest"], *common)
    assert code == 1 and "digest_mismatch" in err, err
    # Approving staging: the CLI prints the action first.
    code, out, _ = cli("approve", tasks["staging"], aid, *common)
    assert code == 0 and 'Action: runs migrate {"target":"staging"}' in out, out
    assert cli("reject", tasks["prod"], prod_aid, *common)[0] == 0
    for th in threads:
        th.join(60)
    assert results == {"staging": [0], "prod": [1]}
    # Used once by the shell agent: a replay over HTTP is refused.
    again = _permit(serve, tasks["staging"], aid, STAGING)
    assert again["permitted"] is False and again["code"] == "consumed"
    other = _permit(serve, tasks["prod"], prod_aid, PROD)
    assert other["permitted"] is False and other["code"] == "not_approved"
    wrong = _permit(serve, tasks["staging"], aid, PROD)
    assert wrong["permitted"] is False and wrong["code"] == "digest_mismatch"
