// A Node.js agent with nothing of spanvisor in it: the OpenTelemetry Node SDK
// (@opentelemetry/sdk-node) and spans shaped by the GenAI semantic
// conventions, an `invoke_agent` root over its `chat` model calls and
// `execute_tool` tool calls. Exported over OTLP to a Collector or straight to
// `spanvisor serve`, its task shows while it runs, from its first model and
// tool calls, before its root span ends (docs/reference/conventions.md#provisional-tasks):
// a row in `spanvisor tasks`, a Slack parent, its calls, tokens and steps.
// The root names it ("invoke_agent planner") when it ends. For its own title
// and progress from the first second, see live-agent.mjs (the live channel).
//
//   npm ci
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_METRICS_EXPORTER=none \
//     OTEL_LOGS_EXPORTER=none node plain-agent.mjs
//
// The model and the tools are simulated (no network but the exporter's).
// Options: --turns N (model calls, default 3; a tool call between two), --pause
// (after the first model call and tool call, print "paused trace=<id>
// root=<id>" and wait for a line on stdin before going on: the root stays
// open meanwhile), --step-ms N (how long a simulated call takes, default 200).
// Environment: the SDK's own (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME,
// OTEL_BSP_SCHEDULE_DELAY, OTEL_TRACES_EXPORTER, ...).

import { once } from "node:events";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";

import { SpanStatusCode, trace } from "@opentelemetry/api";
import { NodeSDK } from "@opentelemetry/sdk-node";

const MODEL = "gpt-4o";
const AGENT = "planner";

function argValue(flag, fallback) {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

/** One model call: a `chat {model}` span with its token usage (set at its end, as instrumentations do). */
async function chat(tracer, turn, stepMs) {
  return tracer.startActiveSpan(
    `chat ${MODEL}`,
    { attributes: { "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": MODEL } },
    async (span) => {
      await sleep(stepMs);
      span.setAttributes({
        "gen_ai.response.model": MODEL,
        "gen_ai.usage.input_tokens": 1200 * turn,
        "gen_ai.usage.output_tokens": 80,
      });
      span.end();
    },
  );
}

/** One tool call: an `execute_tool {name}` span. */
async function tool(tracer, name, stepMs) {
  return tracer.startActiveSpan(
    `execute_tool ${name}`,
    { attributes: { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name } },
    async (span) => {
      await sleep(stepMs / 2);
      span.end();
    },
  );
}

async function waitForALine() {
  const lines = createInterface({ input: process.stdin });
  await Promise.race([once(lines, "line"), once(lines, "close")]);
  lines.close();
}

async function main() {
  const turns = Math.max(1, Number(argValue("--turns", "3")) || 3);
  const stepMs = Math.max(0, Number(argValue("--step-ms", "200")) || 0);
  const pause = process.argv.includes("--pause");
  // Everything from the environment, as any service configures the SDK.
  const sdk = new NodeSDK();
  sdk.start();
  const tracer = trace.getTracer("plain-agent");
  let failure;
  await tracer.startActiveSpan(
    `invoke_agent ${AGENT}`,
    { attributes: { "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT, "gen_ai.provider.name": "openai" } },
    async (root) => {
      try {
        for (let turn = 1; turn <= turns; turn++) {
          await chat(tracer, turn, stepMs);
          if (turn === turns) break;
          await tool(tracer, turn === 1 ? "lookup" : "search", stepMs);
          if (pause && turn === 1) {
            const { traceId, spanId } = root.spanContext();
            console.log(`paused trace=${traceId} root=${spanId}`);
            await waitForALine();
          }
        }
      } catch (err) {
        failure = err;
        root.recordException(err);
        root.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
      } finally {
        root.end();
      }
    },
  );
  // The SDK flushes what its batch processor holds (the root span) on shutdown.
  try {
    await sdk.shutdown();
  } catch (err) {
    console.error(`plain-agent: telemetry not sent: ${err}`);
  }
  if (failure) throw failure;
}

await main();
