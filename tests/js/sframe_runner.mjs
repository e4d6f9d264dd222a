// Node.js runner: JSON list of requests on stdin -> JSON list of results on stdout (see sframe_checks.mjs).
import * as sframe from "../../worker/static/sframe.js";
import { run } from "./sframe_checks.mjs";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const results = await run(sframe, JSON.parse(Buffer.concat(chunks).toString("utf8")));
process.stdout.write(JSON.stringify(results));
