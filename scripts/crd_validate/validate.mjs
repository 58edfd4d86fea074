// Validates custom resources (the kinds kubernetes-validate has no schema for) against their
// CRDs' JSON schemas, as packaged by kubernetes-models. Usage: node validate.mjs resources.json
// (a JSON array of manifests). Exits 1 naming every invalid resource, or any kind it cannot check.
import { readFileSync } from "node:fs";

const models = {
  "monitoring.coreos.com/v1": await import("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1"),
  "gateway.networking.k8s.io/v1": await import("@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1"),
};

const resources = JSON.parse(readFileSync(process.argv[2], "utf8"));
const problems = [];
const checked = {};
for (const resource of resources) {
  const where = `${resource.kind}/${resource.metadata?.name}`;
  const Model = models[resource.apiVersion]?.[resource.kind];
  if (!Model) {
    problems.push(`${where}: no schema for ${resource.apiVersion} ${resource.kind}`);
    continue;
  }
  try {
    new Model(resource).validate();
    checked[resource.kind] = (checked[resource.kind] ?? 0) + 1;
  } catch (error) {
    problems.push(`${where}: ${error.message}`);
  }
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(Object.entries(checked).map(([kind, count]) => `${count} ${kind}`).join(", "));
