"""Validates every object of deploy/kubernetes/ without a cluster.

Core kinds against the Kubernetes API's own schemas (the kubernetes-validate
package, strict: an unknown field is an error) for the oldest and the newest
Kubernetes version the manifests are meant for; the operators' kinds
against the openAPIV3Schema of their CRDs kept in deploy/kubernetes/crds/,
strictly too (an object's unknown field is an error unless the schema
preserves unknown fields there, as the API server would prune it
silently). Before validating anything, it shows that it rejects what it
must: a manifest with a misspelt field, of each family.

Run by scripts/check-kubernetes, which installs the packages into a venv.
"""

import copy
import pathlib
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
# The oldest Kubernetes these manifests are for (sidecar-free pods, policy/v1,
# autoscaling/v2 through KEDA) and the newest the package knows.
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def documents():
    """(file, object) for every document of every file the kustomization
    lists, or of `kubectl kustomize`'s output when given as the argument."""
    if len(sys.argv) > 1:
        rendered = pathlib.Path(sys.argv[1])
        for doc in yaml.safe_load_all(rendered.read_text()):
            if doc:
                yield "(kubectl kustomize)", doc
        return
    kustomization = yaml.safe_load((ROOT / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((ROOT / name).read_text()):
            if doc:
                yield name, doc


def strict(schema):
    """An OpenAPI v3 schema of a CRD as a strict JSON Schema."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("properties",):
            out[key] = {k: strict(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "allOf", "oneOf", "not"):
            out[key] = strict(value)
        elif key == "nullable":
            continue
        elif key.startswith("x-kubernetes-") or key == "default":
            continue
        else:
            out[key] = value
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and "additionalProperties" not in schema and not preserve:
        out["additionalProperties"] = False
    return out


def crd_schemas():
    """(apiVersion, kind) -> a validator, from deploy/kubernetes/crds/."""
    validators = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = strict(version["schema"]["openAPIV3Schema"])
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def problems(doc, validators):
    """What is wrong with one object; empty when it is valid."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    name = doc.get("metadata", {}).get("name", "")
    found = []
    if not DNS_SUBDOMAIN.match(name) or len(name) > 253:
        found.append(f"metadata.name {name!r} is not a DNS subdomain name")
    if key in validators:
        for error in validators[key].iter_errors(doc):
            path = ".".join(str(p) for p in error.absolute_path)
            found.append(f"{path}: {error.message}")
        return found
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            found.append(f"{key}: neither a core kind of Kubernetes {version} nor a CRD in crds/")
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            found.append(f"Kubernetes {version}: {path}: {error.message}")
    return found


def rejects_mistakes(docs, validators):
    """A misspelt field in a Deployment's container and in a CRD's spec must fail."""
    deployment = copy.deepcopy(next(d for _, d in docs if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    queue = copy.deepcopy(next(d for _, d in docs if d["kind"] == "Queue"))
    queue["spec"]["durabel"] = True
    cluster = copy.deepcopy(next(d for _, d in docs if d["kind"] == "Cluster"))
    cluster["spec"]["instances"] = "three"
    for broken, what in [(deployment, "readinesProbe"), (queue, "durabel"), (cluster, "instances")]:
        if not problems(broken, validators):
            sys.exit(f"validate-kubernetes: a {broken['kind']} with a bad {what} passed: the validation is broken")


def main():
    validators = crd_schemas()
    docs = list(documents())
    rejects_mistakes(docs, validators)
    failures, core, custom = 0, 0, 0
    for name, doc in docs:
        for problem in problems(doc, validators):
            failures += 1
            print(f"{name}: {doc.get('kind')} {doc['metadata'].get('name')}: {problem}")
        if (doc.get("apiVersion"), doc.get("kind")) in validators:
            custom += 1
        else:
            core += 1
    if failures:
        sys.exit(f"validate-kubernetes: {failures} problem(s)")
    source = "as kubectl kustomize renders them" if len(sys.argv) > 1 else "as the files list them"
    print(
        f"validate-kubernetes: {len(docs)} objects ({source}) valid: {core} core (Kubernetes "
        f"{' and '.join(VERSIONS)} schemas, strict), {custom} of the operators' kinds "
        f"(their CRD schemas in deploy/kubernetes/crds/, strict)"
    )


if __name__ == "__main__":
    main()
