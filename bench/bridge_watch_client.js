// Watch receiver for bench/bridge_bench.py: plain HTTP/2 (Node's built-in nghttp2 binding), no gRPC
// library and no npm packages, so the receiving side is cheap (~15 us per message).
//
//   node bridge_watch_client.js streams|multiplexed HOST:PORT WATCHES UPDATES SESSION OUT.json
//
// streams:      WATCHES WatchVariables streams of variable "tick" on one connection.
// multiplexed:  one WatchVariablesMultiplexed stream carrying WATCHES watches of "tick".
// Prints WATCHING once every watch has its initial value, records the wall-clock arrival time (ns
// since the epoch, from performance.timeOrigin + performance.now(): microsecond resolution, the
// clock h2load stamps its requests with) of every later message, writes {"arrivals": [[ns, ...] per
// stream], "reached": [watches named per message]} to OUT.json, and exits when stdin closes.
"use strict";
const http2 = require("http2");
const fs = require("fs");
const net = require("net");
const { performance } = require("perf_hooks");

const [mode, target, watchesText, updatesText, session, outPath] = process.argv.slice(2);
const watches = Number(watchesText);
const updates = Number(updatesText);
const SERVICE = "/snakepit.bridge.SnakepitBridge/";

function field(number, bytes) {
  // A length-delimited protobuf field; every field here is shorter than 128 bytes.
  if (bytes.length > 127) throw new Error("field too long for this encoder");
  return Buffer.concat([Buffer.from([(number << 3) | 2, bytes.length]), bytes]);
}
function grpcFrame(message) {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}
function varint(buffer, offset) {
  let value = 0, shift = 0, byte;
  do {
    byte = buffer[offset++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, offset];
}
function countWatchIds(message) {
  // WatchEvent.watch_ids is field 1 (repeated string): count its occurrences.
  let offset = 0, count = 0, tag, length;
  while (offset < message.length) {
    [tag, offset] = varint(message, offset);
    if ((tag & 7) === 2) {
      [length, offset] = varint(message, offset);
      offset += length;
      if (tag >> 3 === 1) count++;
    } else if ((tag & 7) === 0) {
      [, offset] = varint(message, offset);
    } else {
      throw new Error(`unexpected wire type ${tag & 7}`);
    }
  }
  return count;
}
function onMessages(stream, handle) {
  let pending = Buffer.alloc(0);
  stream.on("data", (chunk) => {
    const now = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 5) {
      const size = pending.readUInt32BE(1);
      if (pending.length < 5 + size) break;
      handle(pending.subarray(5, 5 + size), now);
      pending = pending.subarray(5 + size);
    }
  });
  stream.on("error", () => {});
}

// TCP_NODELAY, as gRPC sets it: with Nagle's algorithm on, a request's small DATA frame waits for
// the ACK of its HEADERS frame (~1.5 ms of delayed ACK here), which would be measured as latency.
const client = http2.connect(`http://${target}`, {
  createConnection: () => {
    const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
    return net.connect({ host, port, noDelay: true });
  },
});
const headers = (method) => ({
  ":method": "POST", ":path": SERVICE + method, "content-type": "application/grpc", te: "trailers",
});
const watchRequest = Buffer.concat([field(1, Buffer.from(session)), field(2, Buffer.from("tick"))]);
const arrivals = [];
const reached = [];
let ready = 0, finished = 0;
const streamsExpected = mode === "streams" ? watches : 1;

function done() {
  if (++finished < streamsExpected) return;
  fs.writeFileSync(outPath, JSON.stringify({ arrivals, reached }));
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}
function watching() {
  if (++ready === streamsExpected) process.stdout.write("WATCHING\n");
}

if (mode === "streams") {
  for (let i = 0; i < watches; i++) {
    const times = [];
    arrivals.push(times);
    const stream = client.request(headers("WatchVariables"));
    stream.end(grpcFrame(watchRequest));
    let count = 0;
    onMessages(stream, (message, now) => {
      if (count++ === 0) return watching(); // the initial value
      times.push(now.toString());
      if (times.length === updates) { stream.close(); done(); }
    });
  }
} else {
  const times = [];
  arrivals.push(times);
  const stream = client.request(headers("WatchVariablesMultiplexed"));
  for (let i = 0; i < watches; i++) {
    stream.write(grpcFrame(Buffer.concat([field(1, Buffer.from(`w${i}`)), field(2, watchRequest)])));
  }
  let initial = 0;
  onMessages(stream, (message, now) => {
    if (initial < watches) { if (++initial === watches) watching(); return; }
    times.push(now.toString());
    reached.push(countWatchIds(message));
    if (times.length === updates) { stream.close(); done(); }
  });
}
