// spanvisor's gate for OpenCode: every tool call is allowed or blocked by
// `spanvisor hook opencode` (a policy, or a person from Slack, the terminal
// or the control API) before it runs.
//
// It fails closed: the call runs only when the hook exits 0 with
// {"decision": "allow"}. A deny, any other answer, no answer, a non-zero
// exit, a hook still running at the limit, or no `spanvisor` to run throws,
// and OpenCode hands the error to the model instead of running the tool.
// OpenCode itself runs every tool ungated when a plugin fails to load: see
// docs/coding-agents-hooks.md ("OpenCode").
//
// Settings (environment): SPANVISOR_BIN, the spanvisor command (default
// `spanvisor` on PATH, which `spanvisor run` points at its own gate);
// SPANVISOR_OPENCODE_TIMEOUT, seconds a call may wait for its answer
// (default 600; the hook answers a few seconds before it);
// SPANVISOR_OPENCODE_LOADED, a file written when the plugin loads (set by
// `spanvisor run --gate`, which says so when OpenCode runs a tool without it).
import { spawn } from "node:child_process"
import { writeFileSync } from "node:fs"

const BIN = process.env.SPANVISOR_BIN || "spanvisor"
const LIMIT_S = (() => {
  const n = Number(process.env.SPANVISOR_OPENCODE_TIMEOUT || 600)
  return Number.isFinite(n) && n > 0 ? n : 600
})()

function ask(call, cwd) {
  return new Promise((resolve) => {
    let done = false
    const finish = (answer) => {
      if (!done) {
        done = true
        resolve(answer)
      }
    }
    let child
    try {
      child = spawn(BIN, ["hook", "opencode", "--cli-timeout", String(LIMIT_S)], {
        cwd,
        stdio: ["pipe", "pipe", "pipe"],
      })
    } catch (err) {
      return finish({ ok: false, reason: `spanvisor hook could not be run (${err && err.message}); denied` })
    }
    const out = []
    const err = []
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL")
      } catch {}
      finish({ ok: false, reason: `spanvisor hook gave no answer within ${LIMIT_S} s; denied` })
    }, LIMIT_S * 1000)
    child.stdout.on("data", (d) => out.push(d))
    child.stderr.on("data", (d) => err.push(d))
    child.on("error", (e) => {
      clearTimeout(timer)
      finish({ ok: false, reason: `spanvisor hook could not be run (${e && e.message}); denied` })
    })
    child.on("close", (code) => {
      clearTimeout(timer)
      const said = Buffer.concat(out).toString("utf8").trim().split("\n").pop() || ""
      let answer = null
      try {
        answer = JSON.parse(said)
      } catch {}
      if (code === 0 && answer && answer.decision === "allow") return finish({ ok: true })
      if (code === 0 && answer && answer.decision === "deny") {
        return finish({ ok: false, reason: String(answer.reason || "spanvisor: denied") })
      }
      const why = Buffer.concat(err).toString("utf8").trim().split("\n").pop()
      finish({ ok: false, reason: why || `spanvisor hook answered nothing it could read (exit ${code}); denied` })
    })
    child.stdin.on("error", () => {})
    child.stdin.end(JSON.stringify(call))
  })
}

export const SpanvisorGate = async ({ directory }) => {
  if (process.env.SPANVISOR_OPENCODE_LOADED) {
    try {
      writeFileSync(process.env.SPANVISOR_OPENCODE_LOADED, "loaded\n")
    } catch {}
  }
  return gate(directory)
}

const gate = (directory) => ({
  "tool.execute.before": async (input, output) => {
    const call = {
      session_id: input.sessionID,
      hook_event_name: "PreToolUse",
      tool_name: input.tool,
      tool_input: output.args ?? {},
      tool_use_id: input.callID,
      cwd: directory,
    }
    const answer = await ask(call, directory)
    if (!answer.ok) throw new Error(answer.reason)
  },
})
