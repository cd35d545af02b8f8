// A Node.js (@grpc/grpc-js) client for Schakel's interop tests.
//
// Usage: node client.js '<json>' where the JSON names the node (address,
// servername), the client's credentials (ca, cert, key: file paths), the
// proto directory, the highest TLS version to offer ("TLSv1.3" or "TLSv1.2")
// and the calls to make: "health" and/or "caseStatus". Prints one JSON line
// per call: {"call", "ok", "reply"} or {"call", "ok": false, "code", "details"}.
"use strict";

const fs = require("fs");
const path = require("path");
const tls = require("tls");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const args = JSON.parse(process.argv[2]);
const options = { keepCase: true, enums: String, longs: String, defaults: true };
const partner = grpc.loadPackageDefinition(
  loader.loadSync(path.join(args.protoDir, "schakel/v1/partner.proto"), {
    ...options,
    includeDirs: [args.protoDir],
  })
);
const health = grpc.loadPackageDefinition(
  loader.loadSync(path.join(__dirname, "health.proto"), options)
);

const context = tls.createSecureContext({
  ca: fs.readFileSync(args.ca),
  cert: fs.readFileSync(args.cert),
  key: fs.readFileSync(args.key),
  maxVersion: args.maxVersion || "TLSv1.3",
});
const credentials = grpc.credentials.createFromSecureContext(context);
const channelOptions = {
  "grpc.ssl_target_name_override": args.servername,
  "grpc.default_authority": args.servername,
};

function call(client, method, request) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 10000);
    client[method](request, { deadline }, (error, reply) => {
      if (error) {
        resolve({ ok: false, code: grpc.status[error.code], details: error.details });
      } else {
        resolve({ ok: true, reply });
      }
    });
  });
}

async function main() {
  const clients = {
    health: new health.grpc.health.v1.Health(args.address, credentials, channelOptions),
    caseStatus: new partner.schakel.v1.PartnerService(args.address, credentials, channelOptions),
  };
  const requests = {
    health: ["Check", {}],
    caseStatus: ["GetCaseStatus", { case_ref: { node_id: "x", case_id: "y" } }],
  };
  for (const name of args.calls) {
    const [method, request] = requests[name];
    const result = await call(clients[name], method, request);
    process.stdout.write(JSON.stringify({ call: name, ...result }) + "\n");
  }
  for (const client of Object.values(clients)) client.close();
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
  process.exit(1);
});
