// spanvisor's gate for OpenCode and Kilo (a fork of it, which loads the
// same plugins): every tool call is allowed or blocked by `spanvisor hook
// opencode` (or `kilo`) (a policy, or a person from Slack, the terminal or
// the control API) before it runs.
//
// It fails closed: the call runs only when the hook exits 0 with
// {"decision": "allow"}. A deny, any other answer, no answer, a non-zero
// exit, a hook still running at the limit, no `spanvisor` to run, or a host
// it does not know throws, and the CLI hands the error to the model instead
// of running the tool. The CLI itself runs every tool ungated when a plugin
// fails to load: see docs/reference/coding-agents-hooks.md ("OpenCode").
//
// Which CLI loaded it: each sets its own process id in its environment
// (OPENCODE_PID, KILO_PID), which a variable it inherited from another
// cannot match; neither or both of its own blocks every call.
//
// Settings (environment): SPANVISOR_BIN, the spanvisor command (default
// `spanvisor` on PATH, which `spanvisor run` points at its own gate);
// SPANVISOR_OPENCODE_TIMEOUT, seconds a call may wait for its answer
// (default 600; the hook answers a few seconds before it);
// SPANVISOR_GATE_LOADED, a file written when the plugin loads (set by
// `spanvisor run --gate`, which says so when the CLI runs a tool without it).
//
// It also names each session's task by its first prompt (the CLI's
// chat.message, as the person asked it), and ends it as the CLI says the
// session ended: as it shuts down, one `spanvisor hook <cli>` per session
// with how its last turn ended (complete, error with the API's message,
// cancelled, or still open). Fire and forget: started detached, its input
// in a file it holds, nothing awaited, every error swallowed (under
// `spanvisor run`, which names and ends its own task, nothing is sent).
import { spawn } from "node:child_process"
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

function host() {
  const own = String(process.pid)
  const kilo = process.env.KILO_PID === own
  const opencode = process.env.OPENCODE_PID === own
  if (kilo === opencode) return null // neither, or both: not a host it knows
  return kilo ? "kilo" : "opencode"
}

const CLI = host()
const BIN = process.env.SPANVISOR_BIN || "spanvisor"
const LIMIT_S = (() => {
  const n = Number(process.env.SPANVISOR_OPENCODE_TIMEOUT || 600)
  return Number.isFinite(n) && n > 0 ? n : 600
})()

function ask(call, cwd) {
  if (!CLI) {
    const reason = "spanvisor's gate plugin cannot tell which CLI loaded it (not exactly one of OPENCODE_PID and KILO_PID is its own); denied"
    return Promise.resolve({ ok: false, reason })
  }
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
      child = spawn(BIN, ["hook", CLI, "--cli-timeout", String(LIMIT_S)], {
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
  if (process.env.SPANVISOR_GATE_LOADED) {
    try {
      writeFileSync(process.env.SPANVISOR_GATE_LOADED, "loaded\n")
    } catch {}
  }
  return { ...gate(directory), ...ends(directory) }
}

// The last turn of each session heard of: { state, error }.
const sessions = new Map()

function errorText(error) {
  if (!error || typeof error !== "object") return undefined
  const said = error.data && typeof error.data.message === "string" ? error.data.message : undefined
  return said || (typeof error.name === "string" ? error.name : undefined)
}

function heard(event) {
  const p = event.properties || {}
  const id = p.sessionID
  if (typeof id !== "string" || !id) return
  const last = sessions.get(id) || { state: "open" }
  if (event.type === "session.status" && p.status && p.status.type === "busy") {
    if (last.state !== "open") sessions.set(id, { state: "open" })
    else sessions.set(id, last)
  } else if (event.type === "session.error") {
    const aborted = p.error && p.error.name === "MessageAbortedError"
    sessions.set(id, aborted ? { state: "cancelled" } : { state: "error", error: errorText(p.error) })
  } else if (event.type === "session.idle") {
    if (last.state === "open") sessions.set(id, { state: "complete" })
  }
}

// Sessions whose first prompt was sent: it names the task, a later one does not.
const named = new Set()

// What the person typed: the text parts OpenCode did not add itself (a file's
// or an agent's mention), without the quotes `opencode run` puts around an
// argument with a space in it.
function promptText(parts) {
  const text = (Array.isArray(parts) ? parts : [])
    .filter((p) => p && p.type === "text" && !p.synthetic && typeof p.text === "string")
    .map((p) => p.text)
    .join(" ")
    .trim()
  return text.length > 1 && text.startsWith('"') && text.endsWith('"') ? text.slice(1, -1) : text
}

function sendEnd(id, last, directory) {
  const doc = { session_id: id, hook_event_name: "SessionEnd", last_turn: last.state, cwd: directory }
  if (last.error) doc.error = last.error
  send(doc, directory)
}

function send(doc, directory) {
  if (!CLI) return
  let dir
  try {
    dir = mkdtempSync(join(tmpdir(), "spanvisor-end-"))
    const file = join(dir, "end.json")
    writeFileSync(file, JSON.stringify(doc), { mode: 0o600 })
    const input = openSync(file, "r")
    try {
      const child = spawn(BIN, ["hook", CLI], { cwd: directory, stdio: [input, "ignore", "ignore"], detached: true })
      child.on("error", () => {})
      child.unref()
    } finally {
      closeSync(input)
    }
  } catch {
  } finally {
    try {
      if (dir) rmSync(dir, { recursive: true, force: true })
    } catch {}
  }
}

const ends = (directory) => {
  if (process.env.SPANVISOR_TASK_ID) return {}
  return {
    "chat.message": async (input, output) => {
      try {
        const id = input && input.sessionID
        if (typeof id !== "string" || !id || named.has(id)) return
        named.add(id)
        const prompt = promptText(output && output.parts)
        if (prompt) send({ session_id: id, hook_event_name: "UserPromptSubmit", prompt, cwd: directory }, directory)
      } catch {}
    },
    event: async ({ event }) => {
      try {
        if (event && typeof event.type === "string" && event.type.startsWith("session.")) heard(event)
      } catch {}
    },
    dispose: async () => {
      for (const [id, last] of sessions) sendEnd(id, last, directory)
      sessions.clear()
    },
  }
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
