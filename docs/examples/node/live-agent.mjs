// A Node.js agent that reports one task to spanvisor with nothing but the
// OpenTelemetry JS SDK: spans over OTLP/HTTP, and the live channel (log
// records named by event_name, emitted in the task root's context) so that
// `spanvisor serve` shows the task's name, progress and step while its root
// span is still open (docs/reference/conventions.md#the-live-channel).
//
//   npm ci
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 node live-agent.mjs
//
// Options: --task-id ID (default: a fresh one), --pause (after the "apply"
// checkpoint, print "paused" and wait for a line on stdin before finishing:
// the task stays open meanwhile and heartbeats keep it alive). Ctrl-C or
// SIGTERM ends the task as cancelled.
// Environment: OTEL_EXPORTER_OTLP_ENDPOINT (read by the exporters; they add
// /v1/traces and /v1/logs), OTEL_SERVICE_NAME, OTEL_BSP_SCHEDULE_DELAY and
// OTEL_BLRP_SCHEDULE_DELAY (ms), SPANVISOR_HEARTBEAT (e.g. 30s, 500ms).

import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";

import { SpanStatusCode, context, trace } from "@opentelemetry/api";
import { OTLPLogExporter } from "@opentelemetry/exporter-logs-otlp-http";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchLogRecordProcessor, LoggerProvider } from "@opentelemetry/sdk-logs";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";

// The names spanvisor reads (docs/reference/conventions.md).
const LIVE_TASK_START = "agent.task.start";
const LIVE_TASK_UPDATE = "agent.task.update";
const LIVE_HEARTBEAT = "agent.task.heartbeat";
const EVENT_CHECKPOINT = "agent.checkpoint";

function envMs(name, fallback) {
  const n = Number(process.env[name]);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

function heartbeatMs() {
  const m = /^\s*([0-9.]+)\s*(ms|s|m)?\s*$/i.exec(process.env.SPANVISOR_HEARTBEAT ?? "");
  if (!m) return 30_000;
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[(m[2] ?? "s").toLowerCase()];
  return ms > 0 ? ms : 30_000;
}

// One clock reading as OTel's HrTime ([seconds, nanoseconds]): a span event
// and its live record carry the very same time, so spanvisor knows them as
// one fact (a number would be read as milliseconds, and sometimes as a
// performance-clock offset, by the two SDKs).
function now() {
  const ns = process.hrtime.bigint() - hrtimeAtStart + epochNsAtStart;
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
}
const epochNsAtStart = BigInt(Date.now()) * 1_000_000n;
const hrtimeAtStart = process.hrtime.bigint();

/** A task: its root span, and the live records that say what is on it. */
class Task {
  constructor(tracer, logger, name, attributes) {
    this.logger = logger;
    const start = now();
    this.root = tracer.startSpan(`agent.task ${name}`, { attributes, startTime: start });
    this.ctx = trace.setSpan(context.active(), this.root);
    this.heartbeatMs = heartbeatMs();
    this.say(LIVE_TASK_START, attributes, start);
    // A heartbeat only while nothing else is said; unref'd so that it never
    // keeps the process alive.
    this.timer = setInterval(() => {
      if (Date.now() - this.lastSaid >= this.heartbeatMs) this.say(LIVE_HEARTBEAT, {});
    }, Math.min(1000, this.heartbeatMs)).unref();
  }

  say(eventName, attributes, timestamp = now()) {
    this.lastSaid = Date.now();
    this.logger.emit({ eventName, timestamp, context: this.ctx, attributes });
  }

  /** An agent.checkpoint: a root span event and its live record, one time. */
  checkpoint(message, { progress, step, status } = {}) {
    const attrs = { "agent.message": message };
    if (progress !== undefined) attrs["agent.progress"] = progress;
    if (step !== undefined) attrs["agent.step"] = step;
    if (status !== undefined) attrs["agent.status"] = status;
    const t = now();
    this.root.addEvent(EVENT_CHECKPOINT, attrs, t);
    this.say(EVENT_CHECKPOINT, attrs, t);
  }

  /** A root attribute set while the task runs (status, results, ...). */
  set(key, value) {
    this.root.setAttribute(key, value);
    this.say(LIVE_TASK_UPDATE, { [key]: value });
  }

  end(error) {
    clearInterval(this.timer);
    if (error) {
      this.root.recordException(error);
      this.root.setStatus({ code: SpanStatusCode.ERROR, message: String(error) });
    }
    this.root.end(now());
  }
}

function argValue(flag) {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main() {
  const taskId = argValue("--task-id") ?? `migrate-${randomUUID().slice(0, 8)}`;
  const pause = process.argv.includes("--pause");
  const resource = resourceFromAttributes({ "service.name": process.env.OTEL_SERVICE_NAME || "node-agent" });
  const tracerProvider = new BasicTracerProvider({
    resource,
    // sdk-trace-base's processor reads OTEL_BSP_* itself.
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  const loggerProvider = new LoggerProvider({
    resource,
    processors: [
      // sdk-logs reads no environment variable: the standard one, by hand.
      new BatchLogRecordProcessor({
        exporter: new OTLPLogExporter(),
        scheduledDelayMillis: envMs("OTEL_BLRP_SCHEDULE_DELAY", 1000),
      }),
    ],
  });
  // Both providers flush what they hold (the root span, the last records).
  // Telemetry that cannot be sent is reported, never the agent's failure.
  const flush = async () => {
    for (const r of await Promise.allSettled([tracerProvider.shutdown(), loggerProvider.shutdown()])) {
      if (r.status === "rejected") console.error(`live-agent: telemetry not sent: ${r.reason}`);
    }
  };
  const tracer = tracerProvider.getTracer("live-agent");
  const logger = loggerProvider.getLogger("live-agent");

  const t = new Task(tracer, logger, "Migrate billing", {
    "agent.task.name": "Migrate billing",
    "agent.task.id": taskId,
    "agent.id": "sprocket",
    "agent.steps": ["plan", "apply", "verify"],
  });
  // Stopped from outside: the task ends as cancelled instead of going silent
  // (spanvisor would call it stalled, then lost).
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.once(signal, async () => {
      t.set("agent.status", "cancelled");
      t.end(new Error(`stopped by ${signal}`));
      await flush();
      process.exit(signal === "SIGINT" ? 130 : 143);
    });
  }
  let failure;
  try {
    t.checkpoint("Planning the migration", { progress: 20, step: "plan" });
    // Work in a child span of the root: spanvisor joins it to the open task.
    const child = tracer.startSpan("apply migration", { attributes: { "db.system.name": "postgresql" } }, t.ctx);
    await sleep(100);
    child.end();
    t.checkpoint("Applying the migration", { progress: 60, step: "apply" });
    if (pause) {
      const lines = createInterface({ input: process.stdin });
      console.log("paused");
      await Promise.race([once(lines, "line"), once(lines, "close")]); // a line, or stdin's end
      lines.close();
    }
    t.checkpoint("Verified the new schema", { progress: 100, step: "verify" });
    t.set("agent.result.tables_migrated", 3);
  } catch (err) {
    failure = err;
  } finally {
    t.end(failure);
    await flush();
  }
  console.log(`task=${taskId} trace_id=${t.root.spanContext().traceId} root_span_id=${t.root.spanContext().spanId}`);
  if (failure) throw failure;
}

await main();
