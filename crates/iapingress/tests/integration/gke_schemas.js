// Checks GKE custom resources against the schemas GKE publishes for them, through the
// validators that @kubernetes-models/gke generates from those CRDs.
//
// stdin: a JSON array of objects. stdout: one JSON line per object,
// {"kind", "name", "errors": [{"path", "message"}]} (errors empty when it is valid).
// Exits 2 when a kind has no published schema in the package.
const input = require("fs").readFileSync(0, "utf8");
for (const obj of JSON.parse(input)) {
  const path = `@kubernetes-models/gke/${obj.apiVersion}/${obj.kind}`;
  let Model;
  try {
    Model = require(path)[obj.kind];
  } catch (e) {
    console.error(`no published schema for ${obj.apiVersion} ${obj.kind}: ${e.message}`);
    process.exit(2);
  }
  let errors = [];
  try {
    new Model(obj).validate();
  } catch (e) {
    errors = (e.errors || [{ instancePath: "", message: e.message }]).map((x) => ({
      path: x.instancePath || x.dataPath || "",
      message: x.message + (x.params ? " " + JSON.stringify(x.params) : ""),
    }));
  }
  console.log(JSON.stringify({ kind: obj.kind, name: obj.metadata && obj.metadata.name, errors }));
}
