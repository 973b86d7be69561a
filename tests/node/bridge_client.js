// Drive a muster bridge worker from Node.js: no generated code, the .proto is loaded at run time.
// Usage: node bridge_client.js <host:port> <path/to/snakepit_bridge.proto>
// Prints one JSON object describing what the worker answered.
"use strict";

const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, protoPath] = process.argv.slice(2);
const definition = protoLoader.loadSync(protoPath, {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { SnakepitBridge } = grpc.loadPackageDefinition(definition).snakepit.bridge;
const client = new SnakepitBridge(target, grpc.credentials.createInsecure());

// The Any convention: type_url names the snakepit type, value is the UTF-8 JSON of the value.
const pack = (type, value) => ({
  type_url: `type.googleapis.com/snakepit.${type}`,
  value: Buffer.from(JSON.stringify(value), "utf8"),
});
const unpack = (any) => ({
  type: any.type_url.split("/snakepit.")[1],
  value: JSON.parse(Buffer.from(any.value).toString("utf8")),
});
const call = (method, request) =>
  new Promise((resolve, reject) =>
    client[method](request, (error, response) => (error ? reject(error) : resolve(response))),
  );

async function main() {
  const session_id = `node-${process.pid}`;
  const out = {};

  out.ping = (await call("Ping", { message: "hello from node" })).message;

  const init = await call("InitializeSession", { session_id, metadata: { client: "node" } });
  out.initialized = init.success;
  out.tools = Object.keys(init.available_tools).sort();

  out.set = (await call("SetVariable", { session_id, variable_id: "x", value: pack("integer", 42) })).success;
  const got = await call("GetVariable", { session_id, variable_id: "x" });
  out.get = { ...unpack(got.variable.value), source: got.variable.source, type: got.variable.type };

  const refused = await call("RegisterVariable", {
    session_id,
    name: "t",
    type: "float",
    initial_value: pack("float", 3.5),
    constraints_json: JSON.stringify({ min: 0, max: 2 }),
  });
  out.refused = { success: refused.success, error_message: refused.error_message };

  const added = await call("ExecuteTool", {
    session_id,
    tool_name: "add",
    parameters: { a: pack("integer", 2), b: pack("integer", 40) },
  });
  out.add = unpack(added.result);

  const failed = await call("ExecuteTool", { session_id, tool_name: "fail", parameters: { message: pack("string", "nope") } });
  out.fail = { success: failed.success, error_message: failed.error_message };

  out.stream = await new Promise((resolve, reject) => {
    const items = [];
    const stream = client.ExecuteStreamingTool({ session_id, tool_name: "count", parameters: { n: pack("integer", 3) } });
    stream.on("data", (chunk) => {
      if (chunk.data) items.push(unpack(chunk.data).value);
      if (chunk.is_final) items.push(chunk.success ? "final:ok" : `final:${chunk.error_message}`);
    });
    stream.on("end", () => resolve(items));
    stream.on("error", reject);
  });

  out.watch = await new Promise((resolve, reject) => {
    const seen = [];
    const watch = client.WatchVariables({ session_id, variable_ids: ["x"] });
    watch.on("data", (update) => {
      seen.push([unpack(update.variable.value).value, update.update_source]);
      if (seen.length === 1) {
        call("SetVariable", { session_id, variable_id: "x", value: pack("integer", 43) }).catch(reject);
      } else {
        watch.cancel();
        resolve(seen);
      }
    });
    watch.on("error", (error) => (error.code === grpc.status.CANCELLED ? null : reject(error)));
  });

  out.cleanup = [
    (await call("CleanupSession", { session_id })).success,
    (await call("CleanupSession", { session_id })).success,
  ];
  client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
