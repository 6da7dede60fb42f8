// spanvisor's gate for pi: every tool call is allowed or blocked by
// `spanvisor hook pi` (a policy, or a person from Slack, the terminal or the
// control API) before it runs.
//
// It fails closed: the call runs only when the hook exits 0 with
// {"decision": "allow"}. A deny, any other answer, no answer, a non-zero
// exit, a hook still running at the limit, or no `spanvisor` to run blocks
// it, and pi hands the reason to the model instead of running the tool.
// Once allowed, the call's input is frozen: an extension pi runs after this
// one (a repository's .pi/extensions, run after those given with -e) cannot
// rewrite what was allowed; its attempt throws, which pi reads as a block.
// An input that changed while the gate decided is blocked. This guards
// against an extension that rewrites calls, not against one that replaces
// pi's tools: a repository's extension is code pi runs at its start.
//
// pi's settings (the user's and the repository's .pi/settings.json) can
// run every bash command after a prefix (shellCommandPrefix) and through
// another shell (shellPath): the gate judges the prefix and the command
// together, as pi runs them, and blocks a shell it cannot judge or shell
// settings that changed since pi started (pi reads them at its start).
//
// Settings (environment): SPANVISOR_BIN, the spanvisor command (default
// `spanvisor` on PATH, which `spanvisor run` points at its own gate);
// SPANVISOR_PI_TIMEOUT, seconds a call may wait for its answer (default
// 600; the hook answers a few seconds before it); SPANVISOR_GATE_LOADED, a
// file written when the extension loads (set by `spanvisor run --gate`,
// which says so when pi runs a tool without it).
//
// It also names each session's task by its first prompt, and ends it as pi
// says the session ended: at pi's session_shutdown, one `spanvisor hook pi`
// with how its last run ended (complete, error with the API's message,
// cancelled, or still open). Fire and forget: started detached, its input
// in a file it holds, nothing awaited, every error swallowed (under
// `spanvisor run`, which names and ends its own task, nothing is sent).
import { spawn as spawnLive } from "node:child_process"
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { homedir, tmpdir } from "node:os"
import { join } from "node:path"

// Taken as this file loads: an extension loaded after it cannot swap them.
const spawn = spawnLive
const freeze = Object.freeze
const isFrozen = Object.isFrozen
const keysOf = Object.keys
const stringify = JSON.stringify
const parse = JSON.parse
// The shells whose commands the gate reads as it reads bash's.
const SHELLS = new Set(["/bin/bash", "/usr/bin/bash", "/bin/sh", "/usr/bin/sh", "/bin/dash", "/usr/bin/dash"])

const BIN = process.env.SPANVISOR_BIN || "spanvisor"
const LIMIT_S = (() => {
  const n = Number(process.env.SPANVISOR_PI_TIMEOUT || 600)
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
      child = spawn(BIN, ["hook", "pi", "--cli-timeout", String(LIMIT_S)], { cwd, stdio: ["pipe", "pipe", "pipe"] })
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
        answer = parse(said)
      } catch {}
      if (code === 0 && answer && answer.decision === "allow") return finish({ ok: true })
      if (code === 0 && answer && answer.decision === "deny") {
        return finish({ ok: false, reason: String(answer.reason || "spanvisor: denied") })
      }
      const why = Buffer.concat(err).toString("utf8").trim().split("\n").pop()
      finish({ ok: false, reason: why || `spanvisor hook answered nothing it could read (exit ${code}); denied` })
    })
    child.stdin.on("error", () => {})
    child.stdin.end(stringify(call))
  })
}

function frozen(value) {
  if (value && typeof value === "object" && !isFrozen(value)) {
    freeze(value)
    for (const key of keysOf(value)) frozen(value[key])
  }
  return value
}

function settingsFile(path) {
  try {
    const doc = parse(readFileSync(path, "utf8"))
    return doc && typeof doc === "object" ? doc : {}
  } catch {
    return {}
  }
}

// How pi runs a bash command, as its settings say (the repository's over the user's).
function shellSettings(cwd) {
  const agentDir = process.env.PI_CODING_AGENT_DIR || join(homedir(), ".pi", "agent")
  const merged = { ...settingsFile(join(agentDir, "settings.json")), ...settingsFile(join(cwd, ".pi", "settings.json")) }
  const prefix = typeof merged.shellCommandPrefix === "string" ? merged.shellCommandPrefix : ""
  const shell = typeof merged.shellPath === "string" ? merged.shellPath : ""
  return { prefix, shell, said: stringify([prefix, shell]) }
}

function sessionOf(ctx) {
  try {
    return ctx.sessionManager.getSessionId()
  } catch {
    return undefined
  }
}

function send(doc, cwd) {
  let dir
  try {
    dir = mkdtempSync(join(tmpdir(), "spanvisor-end-"))
    const file = join(dir, "end.json")
    writeFileSync(file, JSON.stringify(doc), { mode: 0o600 })
    const input = openSync(file, "r")
    try {
      const child = spawn(BIN, ["hook", "pi"], { cwd, stdio: [input, "ignore", "ignore"], detached: true })
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

// How its last run ended: the last assistant message's stopReason.
function lastTurn(messages) {
  const said = (Array.isArray(messages) ? messages : []).filter((m) => m && m.role === "assistant")
  const last = said[said.length - 1]
  if (!last) return { state: "open" }
  if (last.stopReason === "error") return { state: "error", error: last.errorMessage }
  if (last.stopReason === "aborted") return { state: "cancelled" }
  return { state: last.stopReason === "toolUse" ? "open" : "complete" }
}

export default function (pi) {
  if (process.env.SPANVISOR_GATE_LOADED) {
    try {
      writeFileSync(process.env.SPANVISOR_GATE_LOADED, "loaded\n")
    } catch {}
  }
  const atStart = shellSettings(process.cwd())
  pi.on("tool_call", async (event, ctx) => {
    let input = event.input ?? {}
    if (event.toolName === "bash") {
      const shell = shellSettings(ctx.cwd)
      if (shell.said !== atStart.said) {
        return { block: true, reason: "spanvisor: pi's shell settings changed since it started; denied" }
      }
      if (shell.shell && !SHELLS.has(shell.shell)) {
        return { block: true, reason: `spanvisor: pi runs bash commands through ${shell.shell}, which the gate cannot judge; denied` }
      }
      if (shell.prefix && typeof input.command === "string") {
        input = { ...input, command: `${shell.prefix}\n${input.command}` } // what pi runs
      }
    }
    const sent = stringify(event.input ?? {})
    const call = {
      session_id: sessionOf(ctx),
      hook_event_name: "PreToolUse",
      tool_name: event.toolName,
      tool_input: input,
      tool_use_id: event.toolCallId,
      cwd: ctx.cwd,
    }
    const answer = await ask(call, ctx.cwd)
    if (!answer.ok) return { block: true, reason: answer.reason }
    if (stringify(event.input ?? {}) !== sent) {
      return { block: true, reason: "spanvisor: the call changed while the gate decided; denied" }
    }
    frozen(event.input)
    return undefined
  })
  if (process.env.SPANVISOR_TASK_ID) return // the launcher names and ends its own task
  let named = false
  let last = { state: "open" }
  pi.on("before_agent_start", async (event, ctx) => {
    try {
      last = { state: "open" }
      const id = sessionOf(ctx)
      const prompt = typeof event.prompt === "string" ? event.prompt.trim() : ""
      if (named || !id || !prompt) return
      named = true
      send({ session_id: id, hook_event_name: "UserPromptSubmit", prompt, cwd: ctx.cwd }, ctx.cwd)
    } catch {}
  })
  pi.on("agent_end", async (event) => {
    try {
      last = lastTurn(event.messages)
    } catch {}
  })
  pi.on("session_shutdown", async (_event, ctx) => {
    try {
      const id = sessionOf(ctx)
      if (!id) return
      const doc = { session_id: id, hook_event_name: "SessionEnd", last_turn: last.state, cwd: ctx.cwd }
      if (last.error) doc.error = String(last.error)
      send(doc, ctx.cwd)
    } catch {}
  })
}
